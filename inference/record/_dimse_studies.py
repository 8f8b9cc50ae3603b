"""The grouping state of received DIMSE studies, shared by every listener instance through the record.

Several ``dxassist listen`` instances behind one DICOM address (a load balancer, a Kubernetes Service)
each receive part of a study, possibly over several associations, into one spool on shared storage. One
row per study folder of that spool (``dimse_studies``) says when its last instance arrived, on the
database's clock (:func:`database_now`), and which instance analyses it:

- every stored instance bumps ``generation`` and ``last_arrival`` (:meth:`StudyClaims.arrived`);
- an instance takes a study whose quiet period has passed on the database's clock, so on every listener,
  with a conditional UPDATE and a lease (:meth:`StudyClaims.claim_next`, the pattern of ``_lease``),
  and renews the lease while it analyses (:meth:`StudyClaims.renew`);
- the study is finished only when no instance arrived since the claim (:meth:`StudyClaims.finish`
  deletes the row only at the claimed generation); a grown study goes back to the queue, to be analysed
  again with every instance once it is quiet;
- failed analyses are counted in the row (``attempts``), with the next try's earliest time
  (``not_before``); an instance that dies holding a claim stops renewing, and another takes the study
  once the lease has run out.

Keys are the study folders' names (:func:`inference.dicom._stable.study_key`: a hash of the calling AE
title and ``safe_name`` of the Study Instance UID, so two nodes sending the same UID are two studies),
never paths, so the spool can move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from inference.record._database import Database
from inference.record._engine import IMMEDIATE
from inference.record._errors import RecordError
from inference.record._lease import database_now, lease_free, took
from inference.record._types import UTCDateTime

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sqlalchemy.orm import Session

KEY_MAX: Final = 80
OWNER_MAX: Final = 64

_metadata = MetaData()
dimse_studies = Table(
    "dimse_studies",
    _metadata,
    Column("study_key", String(KEY_MAX), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("last_arrival", UTCDateTime(), nullable=False),
    Column("not_before", UTCDateTime()),
    Column("attempts", Integer, nullable=False),
    Column("claimed_by", String(OWNER_MAX)),
    Column("claimed_generation", Integer),
    Column("lease_until", UTCDateTime()),
)


@dataclass(frozen=True)
class StudyClaim:
    """A study this listener instance holds: its key, the generation it claimed, failed attempts so far."""

    key: str
    generation: int
    attempts: int


def _write_session(session: Session) -> None:
    # SQLite: take the write lock up front so concurrent listeners queue instead of failing.
    session.connection(execution_options={IMMEDIATE: True})


class StudyClaims:
    """Received studies waiting for their quiet period or being analysed, shared by listener instances."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def arrived(self, key: str) -> None:
        """An instance of study ``key`` was stored: its quiet period restarts, on the database's clock.

        Raises:
            RecordError: The database could not be written.
        """
        for _attempt in range(3):
            try:
                with self._db.transaction() as session:
                    _write_session(session)
                    now = database_now(session)
                    bumped = session.execute(
                        update(dimse_studies)
                        .where(dimse_studies.c.study_key == key)
                        .values(generation=dimse_studies.c.generation + 1, last_arrival=now)
                    )
                    if not took(bumped):
                        session.execute(
                            insert(dimse_studies).values(
                                study_key=key, generation=1, last_arrival=now, attempts=0
                            )
                        )
                    return
            except IntegrityError:
                continue  # another listener inserted the row first: bump it instead
            except DBAPIError as e:
                raise RecordError("The arrival of a received instance could not be recorded.") from e
        raise RecordError("The arrival of a received instance kept conflicting with other listeners.")

    def register(self, keys: Iterable[str]) -> list[str]:
        """Queue the study folders that have no row (left by a stopped listener, or released from the
        dead-letter folder); their quiet period starts now. Returns the keys added."""
        wanted = sorted(set(keys))
        if not wanted:
            return []
        try:
            with self._db.transaction() as session:
                _write_session(session)
                known = set(
                    session.scalars(
                        select(dimse_studies.c.study_key).where(dimse_studies.c.study_key.in_(wanted))
                    )
                )
                added = [key for key in wanted if key not in known]
                if added:
                    now = database_now(session)
                    session.execute(
                        insert(dimse_studies),
                        [
                            {"study_key": key, "generation": 1, "last_arrival": now, "attempts": 0}
                            for key in added
                        ],
                    )
                return added
        except IntegrityError:
            return []  # another listener registered them at the same moment: they are queued
        except DBAPIError as e:
            raise RecordError("The received studies could not be queued.") from e

    def claim_next(self, *, owner: str, quiet_seconds: float, lease_seconds: float) -> StudyClaim | None:
        """Take the study quiet the longest whose quiet period has passed and that nobody holds.

        One study at a time: a claim is renewed only while its study is analysed, so a queue of claims
        held by one instance would run out and be taken by others meanwhile.
        """
        try:
            with self._db.transaction() as session:
                _write_session(session)
                now = database_now(session)
                candidates = session.execute(
                    select(dimse_studies.c.study_key, dimse_studies.c.generation, dimse_studies.c.attempts)
                    .where(
                        lease_free(dimse_studies.c.lease_until, now),
                        dimse_studies.c.last_arrival <= now - timedelta(seconds=quiet_seconds),
                        or_(dimse_studies.c.not_before.is_(None), dimse_studies.c.not_before <= now),
                    )
                    .order_by(dimse_studies.c.last_arrival, dimse_studies.c.study_key)
                    .limit(8)
                ).all()
                for row in candidates:
                    claimed = session.execute(
                        update(dimse_studies)
                        .where(
                            dimse_studies.c.study_key == row.study_key,
                            dimse_studies.c.generation == row.generation,
                            lease_free(dimse_studies.c.lease_until, now),
                        )
                        .values(
                            claimed_by=owner[:OWNER_MAX],
                            claimed_generation=row.generation,
                            lease_until=now + timedelta(seconds=lease_seconds),
                        )
                    )
                    if took(claimed):
                        return StudyClaim(key=row.study_key, generation=row.generation, attempts=row.attempts)
                return None
        except DBAPIError as e:
            raise RecordError("The received studies could not be read.") from e

    def renew(self, *, key: str, owner: str, lease_seconds: float) -> bool:
        """Extend this instance's lease on ``key``; False when it no longer holds it."""
        return self._update_held(
            key, owner, lambda now: {"lease_until": now + timedelta(seconds=lease_seconds)}
        )

    def finish(self, *, key: str, owner: str, generation: int) -> bool:
        """The analysis of the claimed generation is over. True: nothing arrived since, the row is gone
        (the caller removes the files). False: the study grew meanwhile (or the claim was lost), and it is
        back in the queue for another quiet period."""
        try:
            with self._db.transaction() as session:
                _write_session(session)
                gone = session.execute(
                    delete(dimse_studies).where(
                        dimse_studies.c.study_key == key,
                        dimse_studies.c.claimed_by == owner[:OWNER_MAX],
                        dimse_studies.c.generation == generation,
                    )
                )
                if took(gone):
                    return True
                session.execute(
                    update(dimse_studies)
                    .where(dimse_studies.c.study_key == key, dimse_studies.c.claimed_by == owner[:OWNER_MAX])
                    .values(claimed_by=None, claimed_generation=None, lease_until=None)
                )
                return False
        except DBAPIError as e:
            raise RecordError("The received study could not be finished.") from e

    def release(self, *, key: str, owner: str, delay_seconds: float) -> bool:
        """Give ``key`` back to the queue, to be taken again no sooner than ``delay_seconds`` from now."""
        return self._update_held(
            key,
            owner,
            lambda now: {
                "claimed_by": None,
                "claimed_generation": None,
                "lease_until": None,
                "not_before": now + timedelta(seconds=max(delay_seconds, 0.0)),
            },
        )

    def count_attempt(self, *, key: str) -> int:
        """Count one failed analysis of ``key``; return the total (0 when the study is not queued)."""
        try:
            with self._db.transaction() as session:
                _write_session(session)
                session.execute(
                    update(dimse_studies)
                    .where(dimse_studies.c.study_key == key)
                    .values(attempts=dimse_studies.c.attempts + 1)
                )
                return int(
                    session.scalar(select(dimse_studies.c.attempts).where(dimse_studies.c.study_key == key))
                    or 0
                )
        except DBAPIError as e:
            raise RecordError("The failed attempt could not be counted.") from e

    def forget(self, *, key: str, owner: str) -> None:
        """Drop the row of a study this instance holds (moved to the dead-letter folder)."""
        try:
            with self._db.transaction() as session:
                _write_session(session)
                session.execute(
                    delete(dimse_studies).where(
                        dimse_studies.c.study_key == key, dimse_studies.c.claimed_by == owner[:OWNER_MAX]
                    )
                )
        except DBAPIError as e:
            raise RecordError("The received study could not be removed from the queue.") from e

    def count(self) -> int:
        """How many studies wait for their quiet period or are being analysed, on every instance."""
        with self._db.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(dimse_studies)) or 0)

    def _update_held(self, key: str, owner: str, values: Callable[[datetime], dict[str, Any]]) -> bool:
        try:
            with self._db.transaction() as session:
                _write_session(session)
                now = database_now(session)
                changed = session.execute(
                    update(dimse_studies)
                    .where(dimse_studies.c.study_key == key, dimse_studies.c.claimed_by == owner[:OWNER_MAX])
                    .values(**values(now))
                )
                return took(changed)
        except DBAPIError as e:
            raise RecordError("The received study's claim could not be updated.") from e
