"""The source of an output build, kept in the record so that a replica on another host can build it."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from inference.dicom import Limits, read_instance
from inference.services._deliveries import OutputsUnbuildable, _load_spool, serialise_source

_spec = importlib.util.spec_from_file_location(
    "_api_dicom_for_builds", Path(__file__).resolve().parents[1] / "api" / "_api_dicom.py"
)
assert _spec is not None and _spec.loader is not None
_api_dicom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api_dicom)

LIMITS = Limits(max_instance_bytes=8 << 20, max_pixels=4 << 20, max_instances=8)


def _instance(**changes: object):  # type: ignore[no-untyped-def]
    study = _api_dicom.uid(7, 1)
    data = _api_dicom.chest_dicom(study=study, sop=f"{study}.1.1", size=64)
    return dataclasses.replace(read_instance(data, limits=LIMITS), **changes)


@pytest.mark.parametrize("voi_lut", [None, (10, 12, np.arange(4096, dtype=np.uint16))])
def test_the_source_comes_back_whole_without_its_pixels(voi_lut: object, tmp_path: Path) -> None:
    original = _instance(voi_lut=voi_lut)
    blob = serialise_source(original)
    assert blob.startswith(b"PK") and b"pickle" not in blob
    # Any host: from the bytes the record holds, no file needed.
    again = _load_spool(tmp_path / "another-host", None, blob)
    for field in dataclasses.fields(original):
        if field.name in ("pixels", "header", "voi_lut"):
            continue
        assert getattr(again, field.name) == getattr(original, field.name), field.name
    assert again.pixels.size == 0 and again.pixels.dtype == original.pixels.dtype
    assert again.header.SOPInstanceUID == original.header.SOPInstanceUID
    assert again.header.PatientName == original.header.PatientName
    if voi_lut is None:
        assert again.voi_lut is None
    else:
        assert again.voi_lut is not None and again.voi_lut[:2] == (10, 12)
        assert np.array_equal(again.voi_lut[2], np.arange(4096, dtype=np.uint16))


def test_a_build_without_its_source_is_unbuildable_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(OutputsUnbuildable, match="send the study again"):
        _load_spool(tmp_path, None, None)
    with pytest.raises(OutputsUnbuildable, match="gone"):
        _load_spool(tmp_path, "spool/builds/filing-elsewhere", None)
