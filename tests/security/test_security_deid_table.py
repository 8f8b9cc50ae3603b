"""Every row of PS3.15 Table E.1-1 (2026c), one by one: the attribute gets its action, its value is gone.

Each case puts one attribute of the table, with a distinctive value of its VR, into a chest CR, runs the
de-identifier and checks what the profile docstring (``inference/deid/_profile.py``) promises for it;
then the whole written file is searched for the original value.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from _security_env import chest_dicom, new_study_uid
from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from inference.deid import EDITION, Deidentifier, applied_action, basic_action, masked_table, table

SECRET = b"table-secret-table-secret-0123456"
PATIENT = "IPP-TABLE-7731"
FOREIGN_UID = "1.2.826.0.1.3680043.10.1453.42.4242"
NAMES_IN_ITEMS = "Ravensholt^Ingmar"
ROOT = Path(__file__).resolve().parents[2]


def _label(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


ROWS = sorted(table().items())
MASKED = list(masked_table())


def test_the_table_is_the_whole_standard_table() -> None:
    # Table E.1-1 of 2026c lists some 650 attributes; the hand-written list it replaces had 143.
    assert EDITION == "2026c"
    assert len(ROWS) + len(MASKED) > 600
    actions = {action for _, action in ROWS} | {action for *_, action in MASKED}
    assert actions == {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    # The five the old list missed are rows of the table, removed.
    for keyword in (
        "IdentifyingComments",
        "ImagePresentationComments",
        "AcquisitionProtocolDescription",
        "GeneratorID",
        "IconImageSequence",
    ):
        assert basic_action(tag_for_keyword(keyword)) == "X", keyword


def _vr(tag: int) -> str:
    if not dictionary_has_tag(tag):
        return "LO"  # newer than pydicom's dictionary: sent as a long string
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0]


def _original(tag: int, vr: str) -> object:
    text = f"LEAK{tag:08X}"
    if vr == "SQ":
        item = Dataset()
        item.PersonName = NAMES_IN_ITEMS
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        item.ReferencedSOPInstanceUID = FOREIGN_UID
        return Sequence([item])
    values: dict[str, object] = {
        "PN": f"{text}^Person",
        "DA": "20190412",
        "DT": "20190412101500",
        "TM": "101500",
        "UI": FOREIGN_UID,
        "AS": "071Y",
        "AE": text[:16],
        "CS": text[:16],
        "SH": text,
        # Signed, so the needle cannot turn up by chance inside a random UID's digits (a flake it was).
        "DS": "-71.25",
        "IS": "-7125",
        "UR": f"http://{text.lower()}.example/",
        "AT": 0x00100010,
        "US": 7125,
        "SS": 7125,
        "UL": 7125,
        "SL": 7125,
        "UV": 7125,
        "SV": 7125,
        "FL": 71.25,
        "FD": 71.25,
    }
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return text.encode()
    return values.get(vr, text)


def _case(tag: int) -> tuple[Dataset, str, object]:
    study = new_study_uid()
    ds = dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1", patient_id=PATIENT, size=16)))
    vr = _vr(tag)
    value = _original(tag, vr)
    if tag in ds:
        ds[tag].value = value
    else:
        ds.add_new(tag, vr, value)
    return ds, vr, value


def _check(tag: int, action: str) -> None:
    deid = Deidentifier(SECRET)
    ds, vr, original = _case(tag)
    deid.deidentify(ds)
    applied = applied_action(tag, vr)
    shift = deid.shift_days(PATIENT, None)
    patient = str(original) if tag == 0x00100020 else PATIENT
    if tag in (0x00100010, 0x00100020):  # PatientName, PatientID: the pseudonym
        assert str(ds[tag].value) == deid.pseudonym(patient, None)
    elif applied == "X":
        assert tag not in ds
    elif applied == "Z":
        assert tag in ds and ds[tag].value in ("", [], None, b"")
    elif applied == "D":
        assert tag in ds and ds[tag].value not in ("", [], None, b"") and ds[tag].value != original
    elif applied == "U":
        assert str(ds[tag].value) == deid.uid(FOREIGN_UID) and ds[tag].value.startswith("2.25.")
    elif applied == "C":
        items = ds[tag].value
        assert len(items) == 1 and items[0].PersonName == "ANONYMOUS"  # a row of the table itself: D
        assert items[0].ReferencedSOPInstanceUID == deid.uid(FOREIGN_UID)
    elif applied == "S":
        assert vr in ("DA", "DT")
        shifted = (date(2019, 4, 12) - timedelta(days=shift)).strftime("%Y%m%d")
        assert str(ds[tag].value) == shifted + str(original)[8:]
    elif applied == "K":
        assert vr == "TM" and ds[tag].value == original  # times of day, option 113107
    else:
        pytest.fail(f"unexpected action {applied} for {_label(tag)}")
    if tag >> 16 in (0x0000, 0x0002):
        # Command and file meta elements never go into a written dataset: the file meta is rebuilt.
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != FOREIGN_UID
        return
    # Nothing of the original value is left anywhere in the written file (kept times aside).
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    needles = [f"LEAK{tag:08X}", NAMES_IN_ITEMS, FOREIGN_UID, PATIENT]
    if applied != "K" and vr not in ("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"):
        needles.append(str(original))
    for needle in needles:
        assert needle.encode() not in data, (_label(tag), action, applied, needle)


@pytest.mark.parametrize(("tag", "action"), ROWS, ids=[f"{_label(t)}-{a}" for t, a in ROWS])
def test_each_row_of_table_e11(tag: int, action: str) -> None:
    _check(tag, action)


@pytest.mark.parametrize(
    ("tag", "mask", "action"), MASKED, ids=[f"{t:08X}/{m:08X}-{a}" for t, m, a in MASKED]
)
def test_each_repeating_group_row_of_table_e11(tag: int, mask: int, action: str) -> None:
    element = 0x3000 if mask & 0xFFFF == 0 else 0  # the curve row masks the element too: Curve Data
    for group_offset in (0, 0x1E):  # the first and the last group of the range
        concrete = (tag | element) + (group_offset << 16)
        assert basic_action(concrete) == action
        _check(concrete, action)


def test_composite_actions_resolve_as_documented() -> None:
    resolved = {(action, applied_action(tag, _vr(tag))) for tag, action in ROWS}
    by_basic: dict[str, set[str]] = {}
    for basic, applied in resolved:
        by_basic.setdefault(basic, set()).add(applied)
    # Dates and date-times are shifted (113107) whatever their row says; times of day are kept.
    assert by_basic["Z/D"] <= {"Z", "S", "K"}
    assert by_basic["X/D"] <= {"X", "S", "K"}
    assert by_basic["X/Z/D"] <= {"X", "S", "K"}
    assert by_basic["X/Z"] <= {"X", "Z", "S", "K"}
    assert by_basic["X/Z/U*"] == {"C"}
    assert applied_action(0x00400555, "SQ") == "Z"  # AcquisitionContextSequence: type 2 in DX
    assert applied_action(0x00100030, "DA") == "Z" and applied_action(0x00100032, "TM") == "X"
    assert 0x00100030 in dict(ROWS)


def _errors(path: Path) -> set[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=60)
    # Values (UIDs, names) differ before and after by design: compare the messages without them.
    return {re.sub(r"<[^>]*>", "<>", line) for line in done.stderr.splitlines() if line.startswith("Error")}


@pytest.mark.parametrize("seed", sorted((ROOT / "seeds" / "studies").glob("*.dcm")), ids=lambda p: p.name)
def test_a_deidentified_radiograph_is_as_valid_as_its_source(seed: Path, tmp_path: Path) -> None:
    """The choices the table leaves (X/Z, Z/D ...) are resolved so that no IOD error is added."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("This test needs dciodvfy (Debian's dicom3tools).")
    ds = dcmread(seed)
    ds.OperatorsName, ds.InstitutionName, ds.StationName = "Op^Erator", "St Elsewhere", "XR1"
    ds.ReferringPhysicianName, ds.AccessionNumber, ds.DeviceSerialNumber = "Ref^Doc", "ACC1", "SN123"
    before, after = tmp_path / "before.dcm", tmp_path / "after.dcm"
    ds.save_as(before, enforce_file_format=True)
    Deidentifier(SECRET).deidentify(ds)
    ds.save_as(after, enforce_file_format=True)
    assert _errors(after) <= _errors(before)
