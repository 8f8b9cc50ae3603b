"""An auditor's system that syncs the audit trail from a page's timestamp (``AuditEvent?date=ge<timestamp>``)
misses no entry written while the page was read: an entry is dated once its writer holds the chain's head
(on SQLite the one write lock, on PostgreSQL the head row), never while it still waits for it, so a
writer that waited behind the page's read dates its entry after the page's timestamp."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import event

from inference.record import Record
from inference.record._inputs import AuditIn
from inference.record._scope import EVERYTHING, Scope

AUDITOR = Scope(subject="auditor-sync", facility=None, grounds=frozenset({EVERYTHING}))
AUDIT = AuditIn(subject="auditor-sync", role="admin", facility=None, action="audit:read")


def test_an_entry_written_while_a_page_of_the_trail_is_read_is_brought_by_the_next_sync(
    record: Record,
) -> None:
    record.audit.append(**_entry("before"))
    seqs: list[int] = []

    def write() -> None:
        seqs.append(record.audit.append(**_entry("during")))

    writer = threading.Thread(target=write)

    def after(*args: Any) -> None:
        # The page's read holds the chain's head (its first statement): an entry is written meanwhile,
        # its writer queued behind the read until it commits.
        head = str(args[2]).lstrip().startswith("SELECT audit_chain_head")
        if threading.current_thread() is threading.main_thread() and head and not writer.is_alive():
            writer.start()
            # The writer asks for its turn meanwhile (SQLite: the process's writer turn, then the write
            # lock; PostgreSQL: the head row): nothing tells from outside when it waits, so a pause.
            time.sleep(0.05)

    event.listen(record.engine, "after_cursor_execute", after)
    try:
        _total, _rows, timestamp = record.audit.search_audited(scope=AUDITOR, audit=AUDIT, limit=100)
    finally:
        event.remove(record.engine, "after_cursor_execute", after)
        if writer.ident is not None:
            writer.join(10)
    assert len(seqs) == 1
    _total, synced = record.audit.search(since=timestamp, limit=100)
    assert seqs[0] in {row["seq"] for row in synced}, "the entry written meanwhile is dated before the page"


def _entry(subject: str) -> dict[str, Any]:
    return {
        "subject": subject,
        "role": "clinician",
        "facility": "F1",
        "action": "fhir:read",
        "resource_type": "Patient",
        "resource_id": None,
        "patient_id": None,
        "outcome": "success",
        "client": None,
    }
