"""Source values longer than their VR allows are made to fit before they are copied into the outputs.

Modalities write over-long values (a 70-character Study Description, a 20-character Accession Number, a
Patient's Name group over 64 characters); copied as they are, the SR and the captures were invalid
(dciodvfy: *Length invalid for this VR*) and a strict archive refused them. Free text is cut at the
limit, a name's longest component first; an identifier that does not fit is emptied rather than cut
(a cut one would name another study); a decimal string is written again in 16 characters.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from _writers_data import ALGORITHM, CREATED_AT, ORG_ROOT, RESULT_ID, findings, source_dataset, to_bytes
from pydicom.dataelem import DataElement

from inference.dicom import Instance, Limits, read_instance
from inference.writers import build_heatmap_scs, build_sr, write_part10

FAMILY, GIVEN = "Vandenberghe-" + "Q" * 57, "Marguerite"
OVER_LONG = {
    0x00081030: ("LO", "XR THORAX PA " + "D" * 57),  # Study Description, 70 characters
    0x00100010: ("PN", f"{FAMILY}^{GIVEN}"),  # Patient's Name, 81 characters in one group
    0x00080090: ("PN", "R" * 70),  # Referring Physician's Name, one component
    0x00080050: ("SH", "ACC-2026-000000001234"),  # Accession Number, 21 characters
    0x00200010: ("SH", "STUDY-ID-0000000042"),  # Study ID, 19 characters
    0x00101030: ("DS", "72.500000000000001"),  # Patient's Weight, 18 characters
    0x00101010: ("AS", "45"),  # Patient's Age without its unit
}


def _source(values: dict[int, tuple[str, str]] = OVER_LONG) -> Instance:
    ds = source_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while writing the invalid values this test wants
        with pydicom.config.disable_value_validation():
            for tag, (vr, value) in values.items():
                ds.add(DataElement(tag, vr, value))
            data = to_bytes(ds)
    return read_instance(data, limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4))


def _errors(path: Path) -> list[str]:
    executable = shutil.which("dciodvfy")
    if executable is None:
        pytest.fail("dciodvfy is not installed: apt-get install --no-install-recommends dicom3tools")
    run = subprocess.run([executable, str(path)], capture_output=True, timeout=60, check=False)
    lines = (run.stdout + run.stderr).decode("latin-1").splitlines()
    return [line for line in lines if line.startswith(("Error", "Abort"))]


def test_over_long_source_values_are_made_to_fit_and_the_outputs_pass_dciodvfy(tmp_path: Path) -> None:
    source = _source()
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning here could carry the patient's name to stderr
        objects = [build_sr(source, findings(), ALGORITHM, **kwargs)]
        objects += build_heatmap_scs(source, findings(), ALGORITHM, lossy_method="ISO_10918_1", **kwargs)
    assert len(objects) == 3
    for number, built in enumerate(objects):
        path = tmp_path / f"out{number}.dcm"
        path.write_bytes(write_part10(built))
        assert _errors(path) == [], str(built.SOPClassUID)
        back = pydicom.dcmread(BytesIO(path.read_bytes()))
        # What the PACS shows: the text cut at 64 characters, the family name cut so the given name stays.
        assert back.StudyDescription == OVER_LONG[0x00081030][1][:64]
        family, given = str(back.PatientName).split("^")
        assert (given, len(str(back.PatientName))) == (GIVEN, 64)
        assert FAMILY.startswith(family)
        assert str(back.ReferringPhysicianName) == "R" * 63 + "^"
        # Identifiers that do not fit are emptied (type 2), never cut into another study's.
        assert (back.AccessionNumber, back.StudyID) == ("", "")
        assert float(back.PatientWeight) == pytest.approx(72.5)
        assert "PatientAge" not in back or not back.PatientAge
        assert back.PatientID == source.header.PatientID


def test_a_name_of_carets_longer_than_its_vr_allows_is_made_to_fit(tmp_path: Path) -> None:
    # A name group of more carets than the limit: cutting its longest components first emptied every one
    # and then looped for ever on the carets left, so the upload that made the SR never answered (and
    # held a thread at full CPU).
    source = _source(
        {
            0x00100010: ("PN", "Doe" + "^" * 70 + "John"),
            0x00080090: ("PN", "^".join("Q" * 3 for _ in range(80))),
        }
    )
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = build_sr(source, findings(), ALGORITHM, **kwargs)
    path = tmp_path / "sr.dcm"
    path.write_bytes(write_part10(built))
    assert _errors(path) == []
    back = pydicom.dcmread(BytesIO(path.read_bytes()))
    assert str(back.PatientName) == "Doe^John"  # the empty components go, the name stays
    assert len(str(back.ReferringPhysicianName)) <= 64


def _coded(value: str, designator: str, meaning: str) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, designator, meaning
    return item


def test_a_long_code_value_moves_to_long_code_value_and_an_unusable_coded_item_is_left_out(
    tmp_path: Path,
) -> None:
    # Procedure Code Sequence, copied from the source's General Study module: a local code of 20
    # characters (Code Value is SH, 16) was cut into another code; a designator over 16 names no scheme.
    ds = source_dataset()
    ds.ProcedureCodeSequence = [_coded("RPID-CHEST-PA-2VIEW", "L", "XR chest 2 views")]
    ds.AdmittingDiagnosesCodeSequence = [_coded("J93", "HOSPITAL-LOCAL-CODES", "Pneumothorax")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while writing the invalid values this test wants
        with pydicom.config.disable_value_validation():
            data = to_bytes(ds)
    source = read_instance(
        data, limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
    )
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    objects = [build_sr(source, findings(), ALGORITHM, **kwargs)]
    objects += build_heatmap_scs(source, findings(), ALGORITHM, lossy_method="ISO_10918_1", **kwargs)
    for number, built in enumerate(objects):
        path = tmp_path / f"coded{number}.dcm"
        path.write_bytes(write_part10(built))
        assert _errors(path) == [], str(built.SOPClassUID)
        back = pydicom.dcmread(BytesIO(path.read_bytes()))
        (code,) = back.ProcedureCodeSequence
        assert (code.LongCodeValue, "CodeValue" in code) == ("RPID-CHEST-PA-2VIEW", False)
        assert code.CodingSchemeDesignator == "L"
        assert "AdmittingDiagnosesCodeSequence" not in back
