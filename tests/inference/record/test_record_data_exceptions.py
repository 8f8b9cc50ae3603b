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
