"""A source that declares no Specific Character Set but holds accented text still gets valid outputs.

Legacy modalities (and many French sites' CR readers) write Latin-1, or UTF-8, names without declaring
it. The SR and captures copy those names; they must declare the set the bytes are in, else dciodvfy
refuses the objects (a character outside the default repertoire) and a viewer shows the name garbled.
"""

from __future__ import annotations

import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from _writers_data import ALGORITHM, CREATED_AT, ORG_ROOT, RESULT_ID, findings, source_dataset, to_bytes
from pydicom.dataelem import DataElement

from inference.dicom import Instance, Limits, read_instance
from inference.writers import build_heatmap_scs, build_sr, write_part10

NAME = "Lefèvre^Hélène"
DESCRIPTION = "Thorax de face, debout (Hôpital Saint-Éloi)"


def _undeclared(codec: str) -> Instance:
    """The fake radiograph with its name and study description in ``codec`` and no character set."""
    ds = source_dataset()
    del ds.SpecificCharacterSet
    ds.add(DataElement(0x00100010, "PN", NAME.encode(codec)))
    ds.add(DataElement(0x00081030, "LO", DESCRIPTION.encode(codec)))
    return read_instance(
        to_bytes(ds), limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
    )


def _errors(path: Path) -> list[str]:
    executable = shutil.which("dciodvfy")
    if executable is None:
        pytest.fail("dciodvfy is not installed: apt-get install --no-install-recommends dicom3tools")
    run = subprocess.run([executable, str(path)], capture_output=True, timeout=60, check=False)
    lines = (run.stdout + run.stderr).decode("latin-1").splitlines()
    return [line for line in lines if line.startswith(("Error", "Abort"))]


@pytest.mark.parametrize(("codec", "declared"), [("latin-1", "ISO_IR 100"), ("utf-8", "ISO_IR 192")])
def test_undeclared_accented_text_is_declared_and_the_outputs_pass_dciodvfy(
    tmp_path: Path, codec: str, declared: str
) -> None:
    source = _undeclared(codec)
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    objects = [build_sr(source, findings(), ALGORITHM, **kwargs)]
    objects += build_heatmap_scs(source, findings(), ALGORITHM, lossy_method="ISO_10918_1", **kwargs)
    for number, ds in enumerate(objects):
        path = tmp_path / f"out{number}.dcm"
        path.write_bytes(write_part10(ds))
        assert _errors(path) == [], str(ds.SOPClassUID)
        back = pydicom.dcmread(BytesIO(path.read_bytes()))
        # What a viewer shows: the accents, under the declared set; the bytes are the source's.
        assert back.SpecificCharacterSet == declared
        assert str(back.PatientName) == NAME
        assert str(back.StudyDescription) == DESCRIPTION
        assert NAME.encode(codec) in path.read_bytes()


def test_ascii_only_text_keeps_the_default_repertoire() -> None:
    ds = source_dataset()
    del ds.SpecificCharacterSet
    source = read_instance(
        to_bytes(ds), limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
    )
    sr = build_sr(
        source, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    assert "SpecificCharacterSet" not in pydicom.dcmread(BytesIO(write_part10(sr)))


@pytest.mark.parametrize(("name", "declared"), [("Dupont^Jean", None), (NAME, "ISO_IR 100")])
def test_an_empty_specific_character_set_is_the_default_repertoire(
    tmp_path: Path, name: str, declared: str | None
) -> None:
    # (0008,0005) present with no value, as some modalities write it: highdicom refused it, so the
    # result's SR and captures were never built (a dead letter, nothing in the PACS).
    ds = source_dataset()
    ds.add(DataElement(0x00080005, "CS", ""))
    ds.add(DataElement(0x00100010, "PN", name.encode("latin-1")))
    source = read_instance(
        to_bytes(ds), limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
    )
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    objects = [build_sr(source, findings(), ALGORITHM, **kwargs)]
    objects += build_heatmap_scs(source, findings(), ALGORITHM, lossy_method="ISO_10918_1", **kwargs)
    assert len(objects) == 3
    for number, built in enumerate(objects):
        path = tmp_path / f"out{number}.dcm"
        path.write_bytes(write_part10(built))
        assert _errors(path) == [], str(built.SOPClassUID)
        back = pydicom.dcmread(BytesIO(path.read_bytes()))
        assert back.get("SpecificCharacterSet") == declared
        assert str(back.PatientName) == name


def test_several_character_sets_without_code_extensions_become_utf8(tmp_path: Path) -> None:
    # ISO_IR 100\ISO_IR 144 is not a valid combination (several sets need the ISO 2022 forms); highdicom
    # refused it, so the outputs were never built. The decoded values are written in UTF-8.
    ds = source_dataset()
    ds.add(DataElement(0x00080005, "CS", ["ISO_IR 100", "ISO_IR 144"]))
    ds.add(DataElement(0x00100010, "PN", NAME.encode("latin-1")))
    source = read_instance(
        to_bytes(ds), limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
    )
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    objects = [build_sr(source, findings(), ALGORITHM, **kwargs)]
    objects += build_heatmap_scs(source, findings(), ALGORITHM, lossy_method="ISO_10918_1", **kwargs)
    for number, built in enumerate(objects):
        path = tmp_path / f"out{number}.dcm"
        path.write_bytes(write_part10(built))
        assert _errors(path) == [], str(built.SOPClassUID)
        back = pydicom.dcmread(BytesIO(path.read_bytes()))
        assert (back.SpecificCharacterSet, str(back.PatientName)) == ("ISO_IR 192", NAME)
