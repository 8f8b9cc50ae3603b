"""Leases on queue rows: a worker takes a row by a conditional UPDATE, and owns it until the lease ends.

Every queue of the record that several processes work on (the outbox, the output builds, the received
DIMSE studies) hands a row to one worker at a time the same way: the row carries ``lease_until``; a
worker takes it with an UPDATE whose WHERE clause says "nobody holds it" (:func:`lease_free`), and only
the worker whose UPDATE changed the row (:func:`took`) goes on. A worker that dies simply stops renewing:
once ``lease_until`` has passed, any other worker takes the row.

:func:`database_now` reads the database server's clock, for the queues whose times several hosts
compare (their own clocks may disagree by seconds; the database's is one clock for all of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Select, Table, func, or_, select, update
from sqlalchemy.exc import DBAPIError

from inference.record import _audit
from inference.record._engine import IMMEDIATE
from inference.record._errors import RecordError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

    from inference.record._database import Database


def lease_free(lease_until: Any, now: datetime) -> ColumnElement[bool]:
    """The condition "nobody holds this row at ``now``": no lease, or one that has run out."""
    return or_(lease_until.is_(None), lease_until <= now)


def took(result: Any) -> bool:
    """True when the conditional UPDATE of one row changed it (this worker won the row)."""
    return getattr(result, "rowcount", 0) == 1


def database_now(session: Session) -> datetime:
    """The database server's clock now (timezone-aware UTC), millisecond resolution or better.

    PostgreSQL's ``clock_timestamp()`` (not ``now()``, which is the transaction's start); SQLite's
    ``strftime('%f')`` (the clock of the host holding the file, the one every process using it shares).
    """
    if session.get_bind().dialect.name == "sqlite":
        text = session.scalar(select(func.strftime("%Y-%m-%d %H:%M:%f", "now")))
        return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    value = session.scalar(select(func.clock_timestamp()))
    if not isinstance(value, datetime):
        raise TypeError("The database clock did not answer with a timestamp.")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def write_session(session: Session) -> None:
    """Take the write lock at the start of ``session``'s transaction (SQLite: concurrent writers queue)."""
    session.connection(execution_options={IMMEDIATE: True})


def claim(
    session: Session,
    table: Table,
    row_id: Any,
    *,
    now: datetime,
    lease_seconds: float,
    guard: Sequence[ColumnElement[bool]] = (),
) -> bool:
    """Lease the row ``row_id`` of ``table`` (``id``, ``lease_until``) until ``now + lease_seconds``.

    A conditional UPDATE in ``session``'s transaction: it changes the row only while its lease is free at
    ``now`` and every ``guard`` condition holds (e.g. the row is still pending); of two workers of any
    processes that try the same row, one wins.

    Returns:
        True when this call took the lease; False when another worker holds it or a guard failed.
    """
    claimed = session.execute(
        update(table)
        .where(table.c.id == row_id, lease_free(table.c.lease_until, now), *guard)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return took(claimed)


def claim_first(
    session: Session,
    table: Table,
    query: Select[Any],
    *,
    now: datetime,
    lease_seconds: float,
    ready: Callable[[Row[Any]], bool] | None = None,
    guard: Sequence[ColumnElement[bool]] | None = None,
) -> Row[Any] | None:
    """The first row ``query`` finds, leased to the caller by :func:`claim`; None when there is none to take.

    Args:
        session: A session inside its write transaction (:func:`write_session`).
        table: The queue's table (``id`` and ``lease_until`` columns).
        query: The candidates in the order they are handed out (only the first is considered).
        now: The time of the claim (usually :func:`database_now`).
        lease_seconds: How long the row is the caller's alone.
        ready: A further test of the row found (e.g. it is due); a row failing it is not taken.
        guard: Conditions the UPDATE re-checks; default: the row's ``state`` is still ``pending``.
    """
    row = session.execute(query.limit(1)).first()
    if row is None or (ready is not None and not ready(row)):
        return None
    checks = guard if guard is not None else (table.c.state == "pending",)
    return row if claim(session, table, row.id, now=now, lease_seconds=lease_seconds, guard=checks) else None


def finish_pending(
    db: Database,
    table: Table,
    row_id: Any,
    values: dict[str, Any],
    *,
    failure: str,
    then: Callable[[Session], None] | None = None,
) -> None:
    """Write a claimed row's outcome (``values``), if it is still pending, in a transaction of its own.

    ``then(session)`` runs in that transaction when the row changed (e.g. the outcome's audit entry).

    Raises:
        RecordError: ``failure`` (a sentence), when the database refused the write.
    """
    try:
        with db.sessions() as session, session.begin():
            write_session(session)
            changed = session.execute(
                update(table).where(table.c.id == row_id, table.c.state == "pending").values(**values)
            )
            if then is not None and took(changed):
                then(session)
    except DBAPIError as e:
        raise RecordError(failure) from e


def requeue_dead(
    db: Database,
    table: Table,
    *,
    ids: Sequence[int] | None,
    now: datetime,
    audit: dict[str, Any] | None,
    kind: str,
    failure: str,
) -> list[int]:
    """Give dead rows of ``table`` (``ids``, or all when None) a fresh set of attempts, due at ``now``.

    Each row keeps its id (its place in the queue). With ``audit`` (who asked), each row requeued gets
    an audit entry of ``kind`` in the same transaction.

    Raises:
        RecordError: ``failure`` (a sentence), when the database refused the write; nothing was requeued.
    """
    try:
        with db.sessions() as session, session.begin():
            write_session(session)
            # FOR UPDATE (PostgreSQL): a discard ending the rows meanwhile is waited for (see discard_dead).
            query = select(table.c.id).where(table.c.state == "dead").with_for_update()
            if ids is not None:
                query = query.where(table.c.id.in_(list(ids)))
            found = list(session.scalars(query))
            if found:
                session.execute(
                    update(table)
                    .where(table.c.id.in_(found), table.c.state == "dead")
                    .values(state="pending", attempts=0, next_attempt_at=now, lease_until=None, dead_at=None)
                )
                if audit is not None:
                    _audit.append_requeued(session, table=table, ids=found, kind=kind, columns=audit)
            return found
    except DBAPIError as e:
        raise RecordError(failure) from e


def discard_dead(
    db: Database,
    table: Table,
    *,
    ids: Sequence[int],
    dead_before: datetime | None,
    emptied: dict[str, Any],
    audit: dict[str, Any],
    kind: str,
    failure: str,
) -> list[int]:
    """End dead rows of ``table`` (``ids``) for good: state ``discarded``, ``emptied`` written over what
    they held; with ``dead_before``, only rows dead since then or earlier. Return the rows discarded.

    A discarded row is never claimed (only ``pending`` rows are) nor requeued (only ``dead`` ones are).
    Each row discarded gets an audit entry of ``kind`` (``audit``: who asked, the action, outcome
    ``success``), and each of ``ids`` that was no longer such a dead letter one with outcome ``not_found``,
    in the same transaction.

    Raises:
        RecordError: ``failure`` (a sentence), when the database refused the write; nothing was discarded.
    """
    try:
        with db.sessions() as session, session.begin():
            write_session(session)
            # FOR UPDATE (PostgreSQL): a retry handing the rows back meanwhile is waited for, and its rows
            # are no longer dead letters; without the lock they were reported and audited as discarded.
            query = (
                select(table.c.id).where(table.c.state == "dead", table.c.id.in_(list(ids))).with_for_update()
            )
            if dead_before is not None:
                query = query.where(table.c.dead_at <= dead_before)
            found = sorted(session.scalars(query))
            if found:
                session.execute(
                    update(table)
                    .where(table.c.id.in_(found), table.c.state == "dead")
                    .values(state="discarded", lease_until=None, **emptied)
                )
                _audit.append_requeued(
                    session, table=table, ids=found, kind=kind, columns={**audit, "outcome": "success"}
                )
            gone = sorted(set(ids) - set(found))
            if gone:
                _audit.append_requeued(
                    session, table=table, ids=gone, kind=kind, columns={**audit, "outcome": "not_found"}
                )
            return found
    except DBAPIError as e:
        raise RecordError(failure) from e
