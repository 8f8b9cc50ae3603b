"""A late instance of an analysed study that names another patient is a conflict, as before late
instances joined their study.

A PACS that sends an AP under the StudyInstanceUID of another patient's analysed PA (a modality's
worklist mix-up, a UID reused) sends a wrong-patient image. Late instances now join the study the record
holds, and an AP ranks below the PA: the result of the first patient "stood", logged at INFO as
``already_analysed``, and the node's read of the first patient's result went on the trail as a success.
The collision was no longer audited (``conflict``) nor logged as a warning, so nobody was told that a
study holds images of two patients. It is a conflict again: audited and logged, nothing filed.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, Pacs, all_sent, storescu, wait_until

from inference.dicom._stable import study_key
from inference.record import Record

pytestmark = pytest.mark.integration


def _radiograph(study: str, view: str, *, seed: int, patient_id: str | None = None) -> bytes:
    """A frontal chest CR of ``view`` (rows to the patient's left), of ``patient_id`` when given."""
    from pydicom import dcmread

    ds = dcmread(BytesIO(chest_cr(study=study, view=view, seed=seed)))
    ds.PatientOrientation = ["L", "F"]
    if patient_id is not None:
        ds.PatientID = patient_id
        ds.PatientName = "Other^Patient"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _log(pacs: Pacs) -> Path:
    return pacs.listener.home / "logs" / "listener.jsonl"


def _folder(pacs: Pacs, study: str) -> Path:
    return pacs.listener.home / "incoming" / study_key(study, "STORESCU")


def _send(pacs: Pacs, path: Path) -> None:
    storescu([path], port=pacs.listener.port, called=LISTENER_AET)
    folder = _folder(pacs, path.parent.name)
    wait_until(lambda: not folder.exists(), timeout=60, interval=0.3, what="the study's analysis")


def test_a_late_ap_of_another_patient_is_a_conflict_not_a_standing_result(pacs: Pacs) -> None:
    study = new_uid()
    first_path = write(pacs.work / study / "PA.dcm", _radiograph(study, "PA", seed=1))
    storescu([first_path], port=pacs.listener.port, called=LISTENER_AET)
    wait_until(lambda: all_sent(pacs.listener, study), timeout=60, interval=0.5, what="the PA's result")
    wait_until(lambda: not _folder(pacs, study).exists(), timeout=30, what="the PA's folder removed")

    offset = _log(pacs).stat().st_size
    other = f"IPP-OTHER-{new_uid()[-8:]}"
    _send(pacs, write(pacs.work / study / "late-AP.dcm", _radiograph(study, "AP", seed=2, patient_id=other)))
    with open(_log(pacs), "rb") as log:
        log.seek(offset)
        lines: list[dict[str, Any]] = [json.loads(line) for line in log.read().decode().splitlines() if line]
    codes = [str(line.get("code")) for line in lines if line.get("event") == "dimse_study"]

    assert "already_analysed" not in codes, codes
    assert [line["level"] for line in lines if line.get("event") == "dimse_study"] == ["WARNING"]
    assert not any(other in json.dumps(line) for line in lines)  # no identifier in the log
    record = Record(pacs.listener.record_url)
    try:
        entries = record.audit.search(agent="dimse:STORESCU", limit=500)[1]
        assert ("studies:submit", "conflict", "ImagingStudy") in {
            (e["action"], e["outcome"], e["resource_type"]) for e in entries
        }
    finally:
        record.close()
