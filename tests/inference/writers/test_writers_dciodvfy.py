"""The objects sent to a PACS pass David Clunie's validator (dciodvfy, Debian's dicom3tools).

Errors fail the test. Warnings must be exactly the documented allow-list below, so a change that
adds a warning is noticed and either fixed or explained here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from _writers_data import (
    ALGORITHM,
    CREATED_AT,
    ORG_ROOT,
    RESULT_ID,
    findings,
    source,
    source_dataset,
    to_bytes,
)

from inference.writers import build_heatmap_scs, build_sr, write_part10

# Device UID (0018,1002) in a Contributing Equipment Sequence item is in the current standard (the
# DICOM tables shipped with highdicom 0.28 list it, as IHE AIR asks); the dicom3tools release in
# Debian (2022) predates that and reports it as an extension. The same UID is also in the General
# Equipment module, which the validator knows.
_DEVICE_UID_IN_EQUIPMENT_ITEM = {
    "Warning - Attribute is not present in standard DICOM IOD - (0x0018,0x1002) UI Device UID",
    "Warning - Dicom dataset contains attributes not present in standard DICOM IOD - "
    "this is a Standard Extended SOP Class",
}
# 99DXA is our private coding scheme (probability of finding, operating threshold), declared in the
# Coding Scheme Identification Sequence; no standard code exists for these concepts.
_PRIVATE_SCHEME = {
    "Warning - Unrecognized defined term <99DXA> for value 1 of attribute <Coding Scheme Designator>",
}
ALLOWED_SR_WARNINGS = _DEVICE_UID_IN_EQUIPMENT_ITEM | _PRIVATE_SCHEME
ALLOWED_SC_WARNINGS = _DEVICE_UID_IN_EQUIPMENT_ITEM
# Study ID and Study Time are type 2 and copied from the source as they are (an output joins the
# source's study, so it never invents study attributes): empty in the source, empty in the output.
_EMPTY_IN_SOURCE = {
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID",
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study Time",
}


def _dciodvfy(path: Path) -> tuple[list[str], set[str]]:
    """Run the validator; return (error lines, set of warning lines)."""
    executable = shutil.which("dciodvfy")
    if executable is None:
        pytest.fail(
            "dciodvfy is not installed: install Debian's dicom3tools "
            "(apt-get install --no-install-recommends dicom3tools) to validate the DICOM outputs."
        )
    run = subprocess.run([executable, str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("Error", "Abort"))]
    warnings = {line for line in lines if line.startswith("Warning")}
    return errors, warnings


# A header with only what inference.dicom requires: type 2 patient/study attributes and the
# orientation and body part are missing, and the outputs must still be valid.
SPARSE = (
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientOrientation",
    "BodyPartExamined",
    "Manufacturer",
)


@pytest.mark.parametrize("drop", [(), SPARSE], ids=["full-header", "sparse-header"])
def test_sr_passes_dciodvfy(tmp_path: Path, drop: tuple[str, ...]) -> None:
    path = tmp_path / "sr.dcm"
    ds = build_sr(
        source(drop=drop),
        findings(),
        ALGORITHM,
        org_root=ORG_ROOT,
        result_id=RESULT_ID,
        created_at=CREATED_AT,
    )
    path.write_bytes(write_part10(ds))
    errors, warnings = _dciodvfy(path)
    assert errors == []
    assert warnings == ALLOWED_SR_WARNINGS | (_EMPTY_IN_SOURCE if drop else set())


def test_a_not_assessable_sr_passes_dciodvfy(tmp_path: Path) -> None:
    from inference.writers import OodRefusal

    path = tmp_path / "sr-refused.dcm"
    ds = build_sr(
        source(),
        findings(),
        ALGORITHM,
        org_root=ORG_ROOT,
        result_id=RESULT_ID,
        created_at=CREATED_AT,
        refused=OodRefusal(score=None, threshold=3.25),
    )
    path.write_bytes(write_part10(ds))
    errors, warnings = _dciodvfy(path)
    assert errors == []
    assert warnings == ALLOWED_SR_WARNINGS


@pytest.mark.parametrize("drop", [(), SPARSE], ids=["full-header", "sparse-header"])
def test_heatmap_captures_pass_dciodvfy(tmp_path: Path, drop: tuple[str, ...]) -> None:
    captures = build_heatmap_scs(
        source(drop=drop),
        findings(),
        ALGORITHM,
        org_root=ORG_ROOT,
        result_id=RESULT_ID,
        created_at=CREATED_AT,
        lossy_method="ISO_10918_1",  # as the delivery worker builds them (JPEG display rendering)
    )
    assert len(captures) == 2  # with and without a box
    for number, ds in enumerate(captures):
        path = tmp_path / f"sc{number}.dcm"
        path.write_bytes(write_part10(ds))
        errors, warnings = _dciodvfy(path)
        assert errors == []
        assert warnings == ALLOWED_SC_WARNINGS | (_EMPTY_IN_SOURCE if drop else set())


# Source headers as Japanese and Korean modalities write them (PS3.5 Annex H and I examples, names
# invented): an empty value 1 before the code extension, the multi-byte names behind ISO 2022 escape
# sequences; and a single ISO 2022 term with nothing to switch to.
_ISO_2022_SOURCES = {
    "japanese-ir87": (
        ["", "ISO 2022 IR 87"],
        b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
    ),
    "korean-ir149": (
        ["", "ISO 2022 IR 149"],
        b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
        "Hong^Gildong=洪^吉洞=홍^길동",
    ),
    "single-ir100": ("ISO 2022 IR 100", "Buc^Jérôme".encode("latin-1"), "Buc^Jérôme"),
}


@pytest.mark.parametrize("charset", sorted(_ISO_2022_SOURCES))
def test_outputs_of_iso_2022_sources_build_and_pass_dciodvfy(tmp_path: Path, charset: str) -> None:
    from pydicom import dcmread
    from pydicom.dataelem import DataElement

    from inference.dicom import Limits, read_instance

    terms, raw_name, name = _ISO_2022_SOURCES[charset]
    ds = source_dataset()
    ds.SpecificCharacterSet = terms
    del ds.PatientName
    ds.add(DataElement(0x00100010, "PN", raw_name))
    instance = read_instance(
        to_bytes(ds), limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
    )
    sr = build_sr(
        instance, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    captures = build_heatmap_scs(
        instance,
        findings(),
        ALGORITHM,
        org_root=ORG_ROOT,
        result_id=RESULT_ID,
        created_at=CREATED_AT,
        lossy_method="ISO_10918_1",
    )
    for number, (output, allowed) in enumerate(
        [(sr, ALLOWED_SR_WARNINGS), *((c, ALLOWED_SC_WARNINGS) for c in captures)]
    ):
        path = tmp_path / f"out{number}.dcm"
        path.write_bytes(write_part10(output))
        assert str(dcmread(path).PatientName) == name  # the name the PACS shows is the source's
        errors, warnings = _dciodvfy(path)
        assert errors == []
        assert warnings == allowed
