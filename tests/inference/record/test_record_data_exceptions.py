"""A value PostgreSQL refuses as data (SQLSTATE class 22) is the input's fault, not an outage: the record
raises :class:`InvalidData` (the API answers 422, STOW-RS refuses the instance) rather than the retryable
:class:`RecordError` (503 "retry later", STOW-RS 0xA700), which senders would retry forever."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from inference.record import InvalidData, Record
from inference.record._models import Patient
from inference.record._types import new_id, utcnow


def _patient(identifier: str, issuer: str) -> Callable[[Session], None]:
    def add(session: Session) -> None:
        session.add(Patient(id=new_id(), identifier=identifier, issuer=issuer, created=utcnow()))

    return add


@pytest.mark.parametrize(
    ("identifier", "issuer"),
    [("IPP-1", "SS" * 100), ("IPP\x00-1", "")],
    ids=["too-long-for-its-column", "nul-character"],
)
def test_a_value_postgresql_cannot_hold_is_invalid_data(
    shared_postgres_record: Record, identifier: str, issuer: str
) -> None:
    with pytest.raises(InvalidData, match="nothing was saved"):
        shared_postgres_record.db.write(_patient(identifier, issuer))
    with shared_postgres_record.sessions() as session:
        assert session.query(Patient).filter(Patient.identifier == "IPP-1").count() == 0


def test_a_value_a_check_constraint_refuses_is_invalid_data_on_both_backends(record: Record) -> None:
    """A CHECK constraint refuses the same value every time: a permanent refusal (422, dead letter at
    once), never the retryable outage it was answered as (503 "retry later")."""
    from dataclasses import replace

    from _record_data import triage

    data = triage()
    bad = replace(data, vitals={**data.vitals, "spo2_scale": 3})  # SpO2 scales are 1 and 2 (NEWS2)
    with pytest.raises(InvalidData, match="integrity checks"):
        record.results.save_triage(data=bad)
    with record.sessions() as session:
        assert session.query(Patient).count() == 0  # nothing of the result, not even its patient


def test_an_audit_entry_postgresql_cannot_hold_is_invalid_data(shared_postgres_record: Record) -> None:
    """Appends that manage their own transaction (the audit trail, the outbox, DIMSE claims) refuse such
    data the same way as the result writes."""
    from inference.record._models import AuditEvent

    with shared_postgres_record.sessions() as session:
        before = session.query(AuditEvent).count()
    with pytest.raises(InvalidData, match="nothing was saved"):
        shared_postgres_record.audit.append(
            subject="reader",
            role="radiologist",
            facility="F1",
            action="results:read",
            resource_type="Result",
            resource_id="R" * 500,  # longer than its column
            patient_id=None,
            outcome="success",
            client="127.0.0.1",
        )
    with shared_postgres_record.sessions() as session:
        assert session.query(AuditEvent).count() == before
