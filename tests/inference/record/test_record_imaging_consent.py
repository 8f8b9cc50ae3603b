"""A study is never filed for a patient who objected to AI processing, whatever the request read before
the model ran: an upload, a STOW-RS request or a DICOM association reads the patient's consent in its
intake round trip, and an objection recorded between that read and the filing is seen by the filing's own
transaction (``consent_objection``, audited), so the trail never shows a result filed after the patient's
objection (the vital signs' filing does the same: ``test_record_triage_consent.py``)."""

from __future__ import annotations

import pytest
from _record_data import imaging, patient
from sqlalchemy import func, select

from inference.record import AuditIn, ConsentObjection, Record
from inference.record._models import Result

SENDER = AuditIn(subject="pacs-7", role="pacs", facility="north", action="studies:submit")


def _results(record: Record) -> int:
    with record.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Result)) or 0)


def test_an_objection_recorded_after_the_consent_was_read_stops_the_filing(record: Record) -> None:
    who = patient("IPP-IMAGING-OBJECTS")
    sent = imaging(pat=who)
    first = record.results.save_imaging(data=sent, audit=SENDER)
    later = imaging(pat=who)
    # The next study's intake finds the patient allowing AI processing, and the study new ...
    consent, resent, _birth_date = record.results.intake(
        study_instance_uid=later.study_instance_uid,
        patient=later.patient,
        instances=later.instances,
        model=later.model,
    )
    assert consent is not None and consent.ai_processing and not resent
    # ... then the patient objects, while the model runs.
    record.consent.set(
        patient_id=first.patient_id, ai_processing=False, national_sharing=True, by="dr-c", role="clinician"
    )
    with pytest.raises(ConsentObjection):
        record.results.save_imaging(data=later, audit=SENDER)
    assert _results(record) == 1
    entries = sorted(record.audit.search(agent="pacs-7", limit=20)[1], key=lambda e: e["seq"])
    assert [(e["action"], e["resource_type"], e["outcome"]) for e in entries] == [
        ("studies:submit", "ImagingResult", "success"),
        ("studies:submit", "Consent", "consent_objection"),
    ]
    assert entries[-1]["patient_id"] == first.patient_id
    assert record.audit.verify().ok
    # What was filed before the objection is answered as filed when it is sent again (nothing new).
    again = record.results.save_imaging(data=sent, audit=None)
    assert (again.result_id, again.created) == (first.result_id, False)
    assert _results(record) == 1
