"""The audit trail as a concern of the record: append (serialised, hash-chained), search, verify."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from inference.record import _audit
from inference.record._anchor import HeadAnchor
from inference.record._audit import AuditReport
from inference.record._database import Database
from inference.record._engine import IMMEDIATE
from inference.record._errors import RecordError
from inference.record._inputs import AuditIn
from inference.record._models import AuditEvent
from inference.record._reads import (
    DENIED,
    NOT_FOUND,
    SUCCESS,
    Audited,
    Disclosure,
    audited_transaction,
    read_listing,
)
from inference.record._scope import Scope
from inference.record._types import iso, utcnow
from inference.record.fhir import _search


class AuditLog:
    """The hash-chained audit trail (see :mod:`inference.record._audit`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def append_many(self, *, entries: Sequence[Mapping[str, Any]]) -> None:
        """Chain several events in one transaction (a read that disclosed several patients).

        Raises:
            RecordError: The events could not be written; callers fail the request they were auditing.
        """
        try:
            with self._db.transaction() as session:
                session.connection(execution_options={IMMEDIATE: True})
                head = _audit.lock_head_row(session)
                now = utcnow()  # once the head is held: see ``append``
                _audit.append_all_onto(session, head, [{**entry, "time": now} for entry in entries])
        except SQLAlchemyError as e:
            raise RecordError("The audit events could not be written.") from e

    def append(
        self,
        *,
        subject: str,
        role: str,
        facility: str | None,
        action: str,
        resource_type: str | None,
        resource_id: str | None,
        patient_id: str | None,
        outcome: str,
        client: str | None,
    ) -> int:
        """Chain one event onto the audit trail and return its ``seq``.

        Appends are serialised (the chain head is locked), so concurrent writers, threads or replicas,
        never fork the chain. The table refuses updates and deletes.

        Raises:
            RecordError: The event could not be written; callers fail the request they were auditing.
        """
        columns = {
            "subject": subject,
            "role": role,
            "facility": facility,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "patient_id": patient_id,
            "outcome": outcome,
            "client": client,
        }
        try:
            with self._db.transaction() as session:
                session.connection(execution_options={IMMEDIATE: True})
                head = _audit.lock_head_row(session)
                # Dated once the head is held, not before waiting for it: a page of the trail read
                # meanwhile (its timestamp taken under the head) must not date after an entry it cannot see.
                return _audit.append_onto(session, head, time=utcnow(), **columns)
        except SQLAlchemyError as e:
            raise RecordError("The audit event could not be written.") from e

    def events(
        self, *, patient_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Audit events, newest first, optionally only those about one patient (``time`` as ISO text)."""
        with self._db.sessions() as session:
            _total, rows = _audit.search(session, patient_id=patient_id, limit=limit, offset=offset)
        return [{**row, "time": iso(row["time"])} for row in rows]

    def search(self, **filters: Any) -> tuple[int, list[dict[str, Any]]]:
        """Audit entries matching the filters of :func:`inference.record._audit.search`, newest first."""
        with self._db.sessions() as session:
            return _audit.search(session, **filters)

    def search_audited(
        self, *, scope: Scope, audit: AuditIn, named: str | None = None, matches: bool = True, **filters: Any
    ) -> tuple[int, list[dict[str, Any]], datetime]:
        """:meth:`search` for an auditor, audited in its transaction (``read_listing``): one
        ``AuditEvent`` entry per patient the page names (``named``, the patient searched for, when it
        names none; one entry without a patient when neither). ``matches`` False: a search that matches
        nothing (a patient named by no patient id), audited all the same.

        Returns:
            The total, the page's entries, and the instant the page was read from (the Bundle's
            ``timestamp``, taken before the first query: ``_search.read_from``), so that an auditor's
            system syncing with ``date=ge`` from it misses no entry, this search's own included.

        Raises:
            RecordError: The record failed, or the entries could not be written: nothing is served.
        """

        def fetch(session: Session) -> tuple[int, list[dict[str, Any]], datetime]:
            moment = _search.read_from(session)
            total, rows = _audit.search(session, **filters) if matches else (0, [])
            return total, rows, moment

        def disclosed(_session: Session, found: tuple[int, list[dict[str, Any]], datetime]) -> Disclosure:
            patients = [str(e["patient_id"]) for e in found[1] if e.get("patient_id")]
            return Disclosure(patients=patients or ([named] if named else []))

        return read_listing(
            self._db, scope=scope, audit=audit, resource_type="AuditEvent", fetch=fetch, disclosed=disclosed
        )

    def read_audited(
        self, *, seq: int, facility: str | None, audit: AuditIn, resource_id: str
    ) -> Audited[dict[str, Any]]:
        """One entry by ``seq`` for an auditor (``facility``: the part of the trail it reads, see
        :func:`inference.record._audit.search`), its read audited in the same transaction: ``success``
        (with the entry's patient), ``not_found``, or ``denied`` for an entry outside ``facility``'s part.

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """
        with audited_transaction(self._db) as (session, head):
            _total, entries = _audit.search(session, seq=seq, limit=1, facility=facility)
            outcome = SUCCESS if entries else NOT_FOUND
            if not entries and facility is not None and _audit.search(session, seq=seq, limit=1)[1]:
                outcome = DENIED
            entry = entries[0] if entries else None
            patient_id = None if entry is None else entry["patient_id"]
            _audit.append_onto(
                session,
                head,
                **_audit.columns_of(
                    audit,
                    resource_type="AuditEvent",
                    resource_id=resource_id,
                    patient_id=patient_id,
                    outcome=outcome,
                ),
            )
        return Audited(outcome=outcome, value=entry, patient_id=patient_id, resource_id=resource_id)

    def count(self) -> int:
        """How many audit events the trail holds."""
        with self._db.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)

    def verify(self) -> AuditReport:
        """Recompute the whole audit chain; the report lists every edited, deleted or inserted entry.

        With an anchor, the chain must also hold the anchored head exactly (see ``_anchor``): a
        re-chained or truncated trail fails even when it is consistent in itself.
        """
        anchor = self._db.anchor
        # The anchor is read before the walk: it only moves forward, after commits (see check_anchor).
        before = _audit.read_anchor(anchor) if anchor is not None else None
        with self._db.sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                # One snapshot for the whole walk: under READ COMMITTED each statement would see the entries
                # committed meanwhile, and a walk past the head it read first is a false "changed by hand".
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            report = _audit.verify(session)
        if before is not None:
            _audit.check_anchor(self._db, report, before)
        return report


@dataclass(frozen=True)
class _ReadOnlyCopy:
    """What :func:`inference.record._audit.check_anchor` asks of a record: its anchor and sessions."""

    anchor: HeadAnchor
    sessions: sessionmaker[Session]


def verify_sqlite_copy(path: Path, *, anchor: HeadAnchor | None) -> AuditReport:
    """Recompute the audit chain of a SQLite record file opened read-only (a backup's copy).

    The same checks as :meth:`AuditLog.verify` (``dxassist audit verify``), against ``anchor`` when
    given. Nothing is written to the file or beside it: no schema upgrade, no journal-mode change, no
    writer lock file, so a checksum taken before still matches afterwards.

    Raises:
        RecordError: The file cannot be read as a patient record.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
        poolclass=NullPool,
        hide_parameters=True,
    )
    sessions = sessionmaker(engine, expire_on_commit=False)
    try:
        before = _audit.read_anchor(anchor) if anchor is not None else None
        with sessions() as session:
            report = _audit.verify(session)
        if anchor is not None and before is not None:
            _audit.check_anchor(_ReadOnlyCopy(anchor, sessions), report, before)
    except SQLAlchemyError as e:
        raise RecordError("The record file cannot be read as a patient record.") from e
    finally:
        engine.dispose()
    return report
