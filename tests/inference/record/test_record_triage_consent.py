"""Vital signs are never filed for a patient who objected to AI processing, whatever the request read
before scoring: ``POST /v1/vitals`` reads the patient's consent in its first round trip, and an objection
recorded between that read and the filing is seen by the filing's own transaction (``consent_objection``,
audited), so the trail never shows a result filed after the patient's objection."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from _record_data import patient, triage
from sqlalchemy import func, select

from inference.record import AuditIn, ConsentObjection, Record
from inference.record._models import Result

SENDER = AuditIn(subject="monitor-7", role="clinician", facility="north", action="vitals:submit")


def _results(record: Record) -> int:
    with record.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Result)) or 0)


def test_an_objection_recorded_after_the_consent_was_read_stops_the_filing(record: Record) -> None:
    data = triage(pat=patient("IPP-VITALS-OBJECTS"))
    first = record.results.save_triage(data=data, audit=SENDER)
    # The next request's first round trip finds the patient allowing AI processing ...
    intake = record.results.triage_intake(
        identifier="IPP-VITALS-OBJECTS",
        issuer="CHU-NORD",
        since=data.observed_at - timedelta(hours=1),
        until=data.observed_at + timedelta(hours=1),
    )
    assert intake.consent is not None and intake.consent.ai_processing
    # ... then the patient objects, before the request files what it scored.
    record.consent.set(
        patient_id=first.patient_id, ai_processing=False, national_sharing=True, by="dr-c", role="clinician"
    )
    later = replace(data, observed_at=data.observed_at + timedelta(minutes=30))
    with pytest.raises(ConsentObjection):
        record.results.save_triage(data=later, audit=SENDER)
    assert _results(record) == 1
    entries = sorted(record.audit.search(agent="monitor-7", limit=20)[1], key=lambda e: e["seq"])
    assert [(e["action"], e["resource_type"], e["outcome"]) for e in entries] == [
        ("vitals:submit", "TriageResult", "success"),
        ("vitals:submit", "Consent", "consent_objection"),
    ]
    assert entries[-1]["patient_id"] == first.patient_id
    assert record.audit.verify().ok
