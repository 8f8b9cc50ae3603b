"""The output-build queue: results whose DICOM outputs (SR, heatmap captures) are not built yet.

Every new imaging result for which destinations are configured gets a row here in its own filing
transaction (:func:`add_filed`: ``pending``, no attempt made, due at once). The outbox worker claims it
(:meth:`Builds.claim_next`, leased so that no other worker takes it meanwhile), builds the outputs from
what the record holds and queues them (``done``); a build that fails (a source header no writer can
mend, a misconfigured organisation root, memory) is tried again with backoff, until it succeeds or runs
out of attempts (``dead``, the dead-letter state an operator sees and can retry with
:meth:`Builds.requeue`, or give up on with :meth:`Builds.discard`: ``discarded``, never built, its
source dropped). So nothing is built on the request path, and a crash after the commit loses
nothing: any process's worker takes the row.

``spool`` is the folder, relative to ``DXASSIST_HOME``, holding the source files the build needs; the
record stores no absolute path, so ``DXASSIST_HOME`` can move. ``last_error`` holds the error's type and
code, never its text (which may quote a header value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

from inference.record._database import Database
from inference.record._lease import (
    claim_first,
    database_now,
    discard_dead,
    finish_pending,
    lease_free,
    requeue_dead,
    write_session,
)
from inference.record._result_types import PendingBuild
from inference.record._types import UTCDateTime, iso, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


STATES: Final = ("pending", "done", "dead", "discarded")
OWED: Final = ("pending", "dead")
"""The states of a build whose outputs are still owed (a result shows them among its deliveries)."""
_ERROR_MAX: Final = 512

_metadata = MetaData()
output_builds = Table(
    "output_builds",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("result_id", String(36), nullable=False),
    Column("destinations", String(1024), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime()),
    Column("error_code", String(32)),
    Column("last_error", String(_ERROR_MAX)),
    Column("spool", String(255)),
    Column("source", LargeBinary),
    Column("created", UTCDateTime(), nullable=False),
    Column("dead_at", UTCDateTime()),
)


@dataclass(frozen=True)
class BuildJob:
    """A claimed build (no other worker takes it until the lease ends)."""

    id: int
    result_id: str
    destinations: tuple[str, ...]
    attempts: int
    spool: str | None
    source: bytes | None = None


def add_filed(
    session: Session,
    *,
    result_id: str,
    destinations: Sequence[str],
    spool: str | None,
    source: bytes | None = None,
) -> None:
    """Record, in the filing transaction of a new result, that its outputs are owed to ``destinations``.

    The row is due at once and leased to nobody: the outbox worker (of this process, or of any other
    after a crash) claims it and builds the outputs off the request path. ``source`` (the serialised
    source header) lets a process on another host do that.
    """
    now = utcnow()
    session.execute(
        insert(output_builds).values(
            result_id=result_id,
            destinations=",".join(destinations)[:1024],
            state="pending",
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            spool=spool,
            source=source,
            created=now,
        )
    )


_DONE: Final = {
    "state": "done",
    "attempts": output_builds.c.attempts + 1,
    "lease_until": None,
    "spool": None,
    "source": None,
}
"""What marking a build done writes (the source and spool it no longer needs are dropped)."""


def mark_done_in(session: Session, *, job_id: int) -> None:
    """Mark a pending build done in the caller's transaction: the one that queues its outputs, so that
    outputs queued and a build still pending (a crash between two commits) cannot both be true."""
    session.execute(
        update(output_builds)
        .where(output_builds.c.id == job_id, output_builds.c.state == "pending")
        .values(**_DONE)
    )


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "result_id": row.result_id,
        "destinations": [name for name in row.destinations.split(",") if name],
        "state": row.state,
        "attempts": row.attempts,
        "error_code": row.error_code,
        "last_error": row.last_error,
        "spool": row.spool,
        "dead_at": iso(row.dead_at) if row.dead_at is not None else None,
    }


def dead_in(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """The dead builds, oldest first, read in ``session``'s transaction."""
    rows = session.execute(
        select(output_builds).where(output_builds.c.state == "dead").order_by(output_builds.c.id).limit(limit)
    )
    return [_public(row) for row in rows]


class Builds:
    """The queue of results whose DICOM outputs are still owed to destinations."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def spools_in_use(self) -> set[str]:
        """The spool folders some build row still refers to (relative to ``DXASSIST_HOME``)."""
        with self._db.sessions() as session:
            return {
                str(spool)
                for spool in session.scalars(
                    select(output_builds.c.spool).where(output_builds.c.spool.is_not(None)).distinct()
                )
            }

    def claim_next(self, *, now: datetime | None = None, lease_seconds: float = 300.0) -> BuildJob | None:
        """Hand out the oldest due pending build that no other worker holds."""
        with self._db.transaction() as session:
            write_session(session)
            now = now or database_now(session)
            row = claim_first(
                session,
                output_builds,
                select(output_builds)
                .where(
                    output_builds.c.state == "pending",
                    output_builds.c.next_attempt_at <= now,
                    lease_free(output_builds.c.lease_until, now),
                )
                .order_by(output_builds.c.id),
                now=now,
                lease_seconds=lease_seconds,
            )
            if row is None:
                return None
            return BuildJob(
                id=row.id,
                result_id=row.result_id,
                destinations=tuple(name for name in row.destinations.split(",") if name),
                attempts=row.attempts,
                spool=row.spool,
                source=row.source,
            )

    def _finish(self, job_id: int, values: dict[str, Any]) -> None:
        finish_pending(
            self._db, output_builds, job_id, values, failure="The build state could not be updated."
        )

    def mark_done(self, *, job_id: int) -> None:
        """The outputs were built and are in the outbox (a no-op once the build is done)."""
        self._finish(job_id, dict(_DONE))

    def mark_retry(self, *, job_id: int, code: str, error: str, next_attempt_at: datetime) -> None:
        """The build failed again; try after ``next_attempt_at``."""
        self._finish(
            job_id,
            {
                "attempts": output_builds.c.attempts + 1,
                "next_attempt_at": next_attempt_at,
                "lease_until": None,
                "error_code": code[:32],
                "last_error": error[:_ERROR_MAX],
            },
        )

    def mark_dead(self, *, job_id: int, code: str, error: str) -> None:
        """The build ran out of attempts: dead letter until an operator retries it."""
        self._finish(
            job_id,
            {
                "state": "dead",
                "attempts": output_builds.c.attempts + 1,
                "lease_until": None,
                "error_code": code[:32],
                "last_error": error[:_ERROR_MAX],
                "dead_at": utcnow(),
            },
        )

    def for_result(self, *, result_id: str) -> dict[str, Any] | None:
        """The build row of a result that is neither done nor discarded (pending or dead), else None."""
        with self._db.sessions() as session:
            row = session.execute(
                select(output_builds).where(
                    output_builds.c.result_id == result_id, output_builds.c.state.in_(OWED)
                )
            ).first()
        return None if row is None else _public(row)

    def dead(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The dead builds, oldest first."""
        with self._db.sessions() as session:
            return dead_in(session, limit=limit)

    def count(self, *, state: str) -> int:
        """How many builds are in ``state``."""
        with self._db.sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(output_builds).where(output_builds.c.state == state)
                )
                or 0
            )

    def requeue(
        self,
        *,
        ids: Sequence[int] | None = None,
        now: datetime | None = None,
        audit: dict[str, Any] | None = None,
    ) -> list[int]:
        """Give dead builds a fresh set of attempts (``ids``, or all when None); return those moved.

        With ``audit`` (who asked), each build requeued gets an audit entry in the same transaction.
        """
        return requeue_dead(
            self._db,
            output_builds,
            ids=ids,
            now=now or utcnow(),
            audit=audit,
            kind="build",
            failure="The build queue could not be updated; nothing was requeued.",
        )

    def discard(
        self, *, ids: Sequence[int], audit: dict[str, Any], dead_before: datetime | None = None
    ) -> list[int]:
        """Give up on dead builds for good (``ids``; with ``dead_before``, only those dead since then or
        earlier); return those discarded.

        A discarded build is never tried again and drops the source header and spool folder name it held
        (the spool folder itself goes at the next start of ``dxassist serve``); its result no longer lists
        the outputs as owed. Each build discarded is audited (``audit``: who asked and the action; outcome
        ``success``, or ``not_found`` for an id no longer dead) in the same transaction.

        Raises:
            RecordError: The database refused the write; nothing was discarded.
        """
        return discard_dead(
            self._db,
            output_builds,
            ids=ids,
            dead_before=dead_before,
            emptied={"source": None, "spool": None},
            audit=audit,
            kind="build",
            failure="The build queue could not be updated; nothing was discarded.",
        )


def pending_in(session: Session, result_id: str) -> PendingBuild | None:
    """The outputs of a result still owed (its build row pending or dead), read in ``session``; else None.

    A discarded build owes nothing: its result lists no outputs for the destinations it was for."""
    row = session.execute(
        select(
            output_builds.c.destinations,
            output_builds.c.state,
            output_builds.c.attempts,
            output_builds.c.error_code,
            output_builds.c.last_error,
        ).where(output_builds.c.result_id == result_id, output_builds.c.state.in_(OWED))
    ).first()
    if row is None:
        return None
    return PendingBuild(
        destinations=tuple(name for name in row.destinations.split(",") if name),
        state=row.state,
        attempts=row.attempts,
        error_code=row.error_code,
        last_error=row.last_error,
    )
