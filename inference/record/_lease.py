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

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement


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
