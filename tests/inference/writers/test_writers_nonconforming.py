"""Non-conformant source headers that modalities really write do not stop the outputs being built.

Each header below once made the SR or capture builder raise, so the result never reached the PACS. The
writer mends what has one sane reading (see ``inference.writers._common.repair_header``); the outputs
are then valid DICOM that a PACS stores.
"""

from __future__ import annotations

import warnings
from io import BytesIO

import pydicom
import pytest
from _writers_data import (
    ALGORITHM,
    CREATED_AT,
    ORG_ROOT,
    RESULT_ID,
    findings,
    source_dataset,
    to_bytes,
)
from pydicom.dataelem import DataElement

from inference.dicom import Instance, Limits, read_instance
from inference.writers import build_heatmap_scs, build_sr, write_part10


def _instance(**raw: tuple[int, str, object]) -> Instance:
    ds = source_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while writing the invalid values this test wants
        with pydicom.config.disable_value_validation():
            for tag, vr, value in raw.values():
                ds.add(DataElement(tag, vr, value))
            data = to_bytes(ds)
        return read_instance(
            data, limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4)
        )


def _build(instance: Instance) -> list[pydicom.Dataset]:
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning here could carry the patient's name to stderr
        objects = [build_sr(instance, findings(), ALGORITHM, **kwargs)]
        objects += build_heatmap_scs(instance, findings(), ALGORITHM, **kwargs)
    return [pydicom.dcmread(BytesIO(write_part10(ds))) for ds in objects]


POISON = {
    "multi-valued patient name": {"name": (0x00100010, "PN", ["Doe^John", "Roe^Jane"])},
    "unknown character set": {"charset": (0x00080005, "CS", "ISO_IR 999")},
    "birth date with dashes": {"birth": (0x00100030, "DA", "1923-04-17")},
    "sex spelled out": {"sex": (0x00100040, "CS", "female")},
    "one-component name": {"name": (0x00100010, "PN", "Bono")},
    "study time with colons": {"time": (0x00080030, "TM", "08:15:00")},
    "time zone offset beyond 24 hours": {"offset": (0x00080201, "SH", "+9999")},
    "time zone offset in superscript digits": {"offset": (0x00080201, "SH", "+\u00b2\u00b3\u2074\u2075")},
    "all of them": {
        "name": (0x00100010, "PN", ["Doe^John", "Roe^Jane"]),
        "charset": (0x00080005, "CS", "ISO_IR 999"),
        "birth": (0x00100030, "DA", "1923-04-17"),
    },
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_non_conformant_header_still_gets_its_sr_and_captures(case: str) -> None:
    built = _build(_instance(**POISON[case]))
    assert [str(ds.Modality) for ds in built] == ["SR", "OT", "OT"]
    for ds in built:
        assert str(ds.PatientID)  # still the source's patient
        assert "-" not in str(ds.get("PatientBirthDate", "") or "")
        assert str(ds.get("PatientSex", "") or "") in ("", "F", "M", "O")
        assert ds["PatientName"].VM <= 1


def test_the_mended_values_are_the_sane_readings() -> None:
    [sr, *_] = _build(_instance(**POISON["all of them"]))
    assert str(sr.PatientName) == "Doe^John"
    assert str(sr.PatientBirthDate) == "19230417"
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    [sr, *_] = _build(_instance(**POISON["sex spelled out"], **POISON["study time with colons"]))
    assert (str(sr.PatientSex), str(sr.StudyTime)) == ("F", "081500")


def test_an_implausible_time_zone_offset_is_neither_used_nor_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "UTC")  # the server's own zone stands in for the source's
    time.tzset()
    try:
        for case in ("time zone offset beyond 24 hours", "time zone offset in superscript digits"):
            [sr, *_] = _build(_instance(**POISON[case]))
            assert sr.TimezoneOffsetFromUTC == "+0000"
            assert str(sr.ContentTime).startswith("083005")  # UTC wall-clock time of CREATED_AT
    finally:
        monkeypatch.undo()
        time.tzset()
