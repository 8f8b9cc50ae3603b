"""A late instance of a patient who objected to AI processing after their study was analysed.

Late instances of an analysed study now join it: a lateral, or a frontal view ranking below the one
analysed, is filed in the study (its ImagingStudy lists it) with no analysis. That filing did not look at
the patient's consent: after an objection, a late AP or lateral was still taken into the record (its
instance filed, the ImagingStudy changed) and the objection was neither audited nor logged for it. A
patient who objected is not processed at all: the late AP is refused as any study of theirs is
(``consent_objection``, audited and logged), and no late instance is filed.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, Pacs, all_sent, storescu, wait_until
from sqlalchemy import text

from inference.dicom._stable import study_key
from inference.record import Record

pytestmark = pytest.mark.integration


def _radiograph(study: str, view: str, *, seed: int, patient_id: str) -> bytes:
    """A chest CR of ``view`` of ``patient_id``; a frontal one with the rows to the patient's left."""
    from pydicom import dcmread

    ds = dcmread(BytesIO(chest_cr(study=study, view=view, blob=view != "LL", seed=seed)))
    ds.PatientID = patient_id  # each test its own patient: an objection stands for every later study
    if view != "LL":
        ds.PatientOrientation = ["L", "F"]
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _folder(pacs: Pacs, study: str) -> Path:
    return pacs.listener.home / "incoming" / study_key(study, "STORESCU")


def _log(pacs: Pacs) -> Path:
    return pacs.listener.home / "logs" / "listener.jsonl"


@pytest.mark.parametrize("late_view", ["AP", "LL"])
def test_a_late_instance_of_a_patient_who_objected_is_not_filed(pacs: Pacs, late_view: str) -> None:
    study, patient = new_uid(), f"IPP-OBJ-{new_uid()[-10:]}"
    first_path = write(pacs.work / study / "PA.dcm", _radiograph(study, "PA", seed=1, patient_id=patient))
    storescu([first_path], port=pacs.listener.port, called=LISTENER_AET)
    first, _ = wait_until(
        lambda: all_sent(pacs.listener, study), timeout=60, interval=0.5, what="the PA's result"
    )
    wait_until(lambda: not _folder(pacs, study).exists(), timeout=30, what="the PA's folder removed")
    record = Record(pacs.listener.record_url)
    try:
        record.consent.set(
            patient_id=first.patient.id,
            ai_processing=False,
            national_sharing=False,
            by="dr-dpo",
            role="clinician",
        )
    finally:
        record.close()

    offset = _log(pacs).stat().st_size
    late = write(
        pacs.work / study / f"late-{late_view}.dcm", _radiograph(study, late_view, seed=2, patient_id=patient)
    )
    storescu([late], port=pacs.listener.port, called=LISTENER_AET)
    wait_until(lambda: not _folder(pacs, study).exists(), timeout=60, interval=0.3, what="the late analysis")
    with open(_log(pacs), "rb") as log:
        log.seek(offset)
        lines: list[dict[str, Any]] = [json.loads(line) for line in log.read().decode().splitlines() if line]
    codes = [str(line.get("code")) for line in lines if line.get("event") == "dimse_study"]

    assert "already_analysed" not in codes, codes
    from pydicom import dcmread

    sop = str(dcmread(late).SOPInstanceUID)
    record = Record(pacs.listener.record_url)
    try:
        with record.engine.connect() as connection:
            filed = connection.execute(
                text("SELECT COUNT(*) FROM instances WHERE sop_instance_uid = :sop"), {"sop": sop}
            ).scalar()
        entries = record.audit.search(agent="dimse:STORESCU", limit=500)[1]
    finally:
        record.close()
    assert filed == 0
    if late_view == "AP":  # a frontal view is refused as any study of theirs is, and the refusal audited
        assert codes == ["consent_objection"], codes
        assert "consent_objection" in {e["outcome"] for e in entries}
