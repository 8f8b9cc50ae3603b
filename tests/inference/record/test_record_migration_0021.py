"""Migration 0021: on PostgreSQL the audit trail refuses TRUNCATE (a statement no row trigger sees), as it
refuses UPDATE and DELETE; the downgrade gives TRUNCATE back. SQLite has no TRUNCATE: its DELETE
triggers keep refusing."""

from __future__ import annotations

import pytest
from _record_data import migrate, triage
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from inference.record import Record


def test_the_audit_trail_cannot_be_emptied(record: Record) -> None:
    record.results.save_triage(data=triage())
    record.audit.append(
        subject="reader-1", role="radiologist", facility="north", action="results:read",
        resource_type="Result", resource_id="r-1", patient_id=None, outcome="success", client=None,
    )  # fmt: skip
    statements = (
        ["TRUNCATE audit_events", "TRUNCATE audit_chain_head", "TRUNCATE audit_events CASCADE"]
        if record.engine.dialect.name == "postgresql"
        else ["DELETE FROM audit_events"]
    )
    for statement in statements:
        with pytest.raises(DBAPIError), record.engine.begin() as connection:
            connection.execute(text(statement))
    assert record.audit.verify().ok
    if record.engine.dialect.name == "postgresql":
        migrate(record, "0020")
        with record.engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_events"))  # what 0021 closes
        migrate(record, "head")
