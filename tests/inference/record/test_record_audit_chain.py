"""The audit trail's hash chain: concurrent appends never fork it; edits and deletions are found."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from inference.record import Record


def _restore_protection(record: Record) -> None:
    # The PostgreSQL record is shared by the session's tests: put the append-only trigger back.
    if record.engine.dialect.name == "postgresql":
        with record.engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change"))


def _append(record: Record, n: int, subject: str = "dr-x") -> int:
    return record.audit.append(
        subject=subject,
        role="radiologist",
        facility="F1",
        action="results:read",
        resource_type="Result",
        resource_id=f"r-{n}",
        patient_id=f"p-{n % 3}",
        outcome="success",
        client="127.0.0.1",
    )


def test_concurrent_appends_form_one_unbroken_chain(record: Record) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = list(pool.map(lambda n: _append(record, n), range(80)))
    assert sorted(seqs) == list(range(1, 81))
    report = record.audit.verify()
    assert report.ok and report.entries == 80 and report.head_seq == 80, report.problems


def test_single_appends_and_batched_appends_chain_onto_each_other(record: Record) -> None:
    # append writes its entry with Core statements, append_many through the ORM: their hashes must be
    # computed over the same content, and each must chain onto the head the other moved.
    entry = {
        "subject": "dr-y",
        "role": "auditor",
        "facility": "F1",
        "action": "audit:read",
        "resource_type": "AuditEvent",
        "resource_id": None,
        "patient_id": "p-9",
        "outcome": "success",
        "client": "10.0.0.7",
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda n: _append(record, n) if n % 2 else record.audit.append_many(entries=[entry] * 2),
                range(20),
            )
        )
    report = record.audit.verify()
    assert report.ok and report.entries == 30 and report.head_seq == 30, report.problems
    rows = record.audit.events(limit=30)
    assert sorted(r["seq"] for r in rows) == list(range(1, 31))
    assert sum(1 for r in rows if r["subject"] == "dr-y") == 20


def test_an_edited_entry_and_a_deleted_one_are_named(record: Record) -> None:
    for n in range(5):
        _append(record, n)
    assert record.audit.verify().ok
    with record.engine.begin() as connection:
        # What an intruder with database rights would do: lift the protection, then edit and delete.
        if record.engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
            connection.execute(text("DROP TRIGGER audit_events_no_delete"))
        connection.execute(text("UPDATE audit_events SET outcome = 'denied' WHERE seq = 2"))
        connection.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    _restore_protection(record)
    report = record.audit.verify()
    assert not report.ok
    by_seq = {p.seq: p.reason for p in report.problems}
    assert "changed" in by_seq[2]
    assert "missing" in by_seq[5]
    assert set(by_seq) == {2, 5}


def test_a_deleted_tail_is_noticed(record: Record) -> None:
    for n in range(3):
        _append(record, n)
    with record.engine.begin() as connection:
        if record.engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_no_delete"))
        connection.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    _restore_protection(record)
    report = record.audit.verify()
    assert [p.seq for p in report.problems] == [3] and "missing" in report.problems[0].reason


def test_the_head_cannot_move_backwards(record: Record) -> None:
    _append(record, 1)
    import pytest
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="only moves forward"), record.engine.begin() as connection:
        connection.execute(text("UPDATE audit_chain_head SET seq = 0"))


def test_consent_defaults_and_changes(record: Record) -> None:
    from inference.record import PatientIn

    patient_id = record.patients.register(patient=PatientIn(identifier="IPP-C-1", facility="F1"))
    assert record.patients.register(patient=PatientIn(identifier="IPP-C-1")) == patient_id
    allowed = record.consent.for_identifier(identifier="IPP-C-1", issuer=None)
    assert allowed is not None and allowed.ai_processing
    assert record.consent.sharing_allowed(patient_id=patient_id)
    record.consent.set(
        patient_id=patient_id, ai_processing=False, national_sharing=False, by="dr-c", role="clinician"
    )
    objected = record.consent.for_identifier(identifier="IPP-C-1", issuer=None)
    assert objected is not None and not objected.ai_processing
    assert record.consent.for_identifier(identifier="IPP-C-1", issuer="other-issuer") is None
    assert not record.consent.sharing_allowed(patient_id=patient_id)
    assert not record.consent.sharing_allowed(patient_id="no-such-patient")
    state = record.consent.get(patient_id=patient_id).public()
    assert state["ai_processing"] == "deny" and state["updated_by"] == "dr-c"
