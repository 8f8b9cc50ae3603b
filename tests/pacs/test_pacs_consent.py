"""Consent on the DIMSE path: a study of a patient who objected to AI processing is dropped, once."""

from __future__ import annotations

import time
import uuid
from io import BytesIO

import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import LISTENER_AET, QUIET_SECONDS, TEST_AET, Pacs, wait_until

from inference.dicom._stable import study_key
from inference.record import PatientIn, Record

pytestmark = pytest.mark.integration


def _send(pacs: Pacs, data: bytes, patient_id: str) -> int:
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ds = dcmread(BytesIO(data))
    ds.PatientID = patient_id
    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", pacs.listener.port, ae_title=LISTENER_AET)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_a_study_of_a_patient_who_objected_is_dropped_once_not_retried(pacs: Pacs) -> None:
    identifier = f"IPP-DIMSE-{uuid.uuid4().hex[:8]}"
    record = Record(pacs.listener.record_url)
    try:
        patient_id = record.patients.register(patient=PatientIn(identifier=identifier))
        record.consent.set(
            patient_id=patient_id, ai_processing=False, national_sharing=True, by="test", role="clinician"
        )
    finally:
        record.close()

    study = new_uid()
    # Accepted on arrival (consent is the analysis's business, not the transport's), then dropped.
    assert _send(pacs, chest_cr(study=study), identifier) == 0x0000
    folder = pacs.listener.home / "incoming" / study_key(study, TEST_AET)
    wait_until(lambda: not folder.exists(), timeout=30, what="the dropped study's folder to be cleaned")
    # Several quiet periods later, nothing was tried again: one refusal in the audit trail, no result.
    time.sleep(4 * QUIET_SECONDS)
    record = Record(pacs.listener.record_url)
    try:
        refusals = [
            e for e in record.audit.events(patient_id=patient_id) if e["outcome"] == "consent_objection"
        ]
        assert len(refusals) == 1
        assert refusals[0]["subject"] == f"dimse:{TEST_AET}" and refusals[0]["action"] == "studies:submit"
        assert record.results.latest_for_study(study_instance_uid=study) is None
    finally:
        record.close()
    assert not folder.exists()
    log = (pacs.listener.home / "logs" / "listener.jsonl").read_text()
    assert "the patient objected to AI processing" in log
    assert identifier not in log
