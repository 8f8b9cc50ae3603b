"""A discard and a retry of the same dead letters at once (two operators, or a retry --all and a discard
--all): each row ends in one state, and what the discard reports and audits is what it did.

On PostgreSQL a transaction does not see another's uncommitted change: a discard that read the rows as
dead while a retry was handing them back, then found them ``pending`` when it came to change them,
changed nothing, yet reported them discarded and audited each as a successful discard.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from _loopback import wait_until
from _postgres import new_postgres_database
from _record_data import imaging, patient, uid
from sqlalchemy import select, text, update

from inference.record import OutputsIn, Record
from inference.record._outbox import OutboxObject, outbox

OPERATOR = "cli:day-operator"


@pytest.fixture
def record(postgres_server: str) -> Iterator[Record]:
    rec = Record(new_postgres_database(postgres_server))
    rec.migrate()
    try:
        yield rec
    finally:
        rec.close()


def _dead_deliveries(record: Record) -> list[int]:
    """A result's SR and capture, refused for good by ``pacs``: their outbox ids."""
    data = replace(
        imaging(pat=patient("IPP-RACE-1")),
        outputs=OutputsIn(destinations=("pacs",), spool=None, source=b"the source header"),
    )
    result_id = record.results.save_imaging(data=data).result_id
    job = record.builds.claim_next()
    assert job is not None
    objects = [
        OutboxObject("sr", uid(), "1.2.840.10008.5.1.4.1.1.88.33", b"DICM-sr"),
        OutboxObject("sc", uid(), "1.2.840.10008.5.1.4.1.1.7", b"DICM-sc"),
    ]
    record.outbox.enqueue(result_id=result_id, destinations=["pacs"], objects=objects, build_id=job.id)
    while (item := record.outbox.claim_next(destination="pacs")) is not None:
        record.outbox.mark_dead(item_id=item.id, error="Refused.", code="destination_refused")
    with record.sessions() as session:
        return list(session.scalars(select(outbox.c.id).where(outbox.c.result_id == result_id)))


def _waiting_on_a_lock(record: Record) -> bool:
    with record.engine.connect() as connection:
        waiting = connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = :db"),
            {"db": record.engine.url.database},
        )
    return bool(waiting)


def test_a_discard_overtaken_by_a_retry_neither_reports_nor_audits_it_as_discarded(record: Record) -> None:
    ids = _dead_deliveries(record)
    who = {
        "subject": OPERATOR,
        "role": "admin",
        "facility": None,
        "client": None,
        "action": "dead-letter:discard",
        "time": datetime.now(UTC),
    }
    with record.engine.connect() as retry, ThreadPoolExecutor(1) as pool:
        # A retry in flight: it has handed the rows back (pending) and not committed yet.
        retry.execute(update(outbox).where(outbox.c.id.in_(ids)).values(state="pending", dead_at=None))
        discard = pool.submit(record.outbox.discard, ids=ids, audit=who)
        wait_until(lambda: _waiting_on_a_lock(record), timeout=30, what="the discard waiting for the retry")
        retry.commit()
        discarded = discard.result()
    assert discarded == []
    with record.sessions() as session:
        states = list(session.scalars(select(outbox.c.state).where(outbox.c.id.in_(ids))))
    assert states == ["pending", "pending"]
    entries = record.audit.search(agent=OPERATOR, limit=100)[1]
    assert sorted(e["outcome"] for e in entries if e["action"] == "dead-letter:discard") == [
        "not_found",
        "not_found",
    ]


def test_a_retry_overtaken_by_a_discard_neither_reports_nor_audits_it_as_retried(record: Record) -> None:
    ids = _dead_deliveries(record)
    who = {
        "subject": OPERATOR,
        "role": "admin",
        "facility": None,
        "client": None,
        "action": "dead-letter:retry",
        "outcome": "success",
        "time": datetime.now(UTC),
    }
    with record.engine.connect() as discard, ThreadPoolExecutor(1) as pool:
        # A discard in flight: it has ended the rows (discarded) and not committed yet.
        discard.execute(update(outbox).where(outbox.c.id.in_(ids)).values(state="discarded", payload=b""))
        retry = pool.submit(record.outbox.requeue, ids=ids, audit=who)
        wait_until(lambda: _waiting_on_a_lock(record), timeout=30, what="the retry waiting for the discard")
        discard.commit()
        retried = retry.result()
    assert retried == []
    with record.sessions() as session:
        states = list(session.scalars(select(outbox.c.state).where(outbox.c.id.in_(ids))))
    assert states == ["discarded", "discarded"]
    entries = record.audit.search(agent=OPERATOR, limit=100)[1]
    assert [e for e in entries if e["action"] == "dead-letter:retry"] == []
