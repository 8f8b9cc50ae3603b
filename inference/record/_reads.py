"""Reads of patient data authorised, done and audited in one transaction.

An audited read locks the audit chain's head first, then checks the caller's ground (facility, the
patient's consent to sharing, a break-the-glass grant: :func:`inference.record._scope.basis`), reads the
data and appends its entry, and commits. So:

- the entry and the data come from one state of the record: a consent withdrawn or a grant opened by
  another transaction is wholly before the read (seen by the check, and on the chain before the read's
  entry) or wholly after it (its own entry follows the read's). On PostgreSQL, under READ COMMITTED, each
  statement after the lock sees every change committed before it, and every audited change appends to
  the chain, so it waits for the head while a read holds it; SQLite runs one writer at a time;
- a read whose entry cannot be written (or committed) returns nothing: the data leaves the transaction
  only once it has committed with its entry;
- the check, the read and the entry are one round trip with the database, where they were three or four.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from inference.record import _audit, _scope
from inference.record._database import Database
from inference.record._engine import IMMEDIATE
from inference.record._errors import RecordError
from inference.record._inputs import AuditIn
from inference.record._types import utcnow

T = TypeVar("T")

SUCCESS: Final = "success"
BREAK_GLASS: Final = "break_glass"
DENIED: Final = "denied"
NOT_FOUND: Final = "not_found"
FAILURE: Final = "failure"
SERVED: Final = frozenset({SUCCESS, BREAK_GLASS})
"""The outcomes of a read that served its data."""


@dataclass(frozen=True, slots=True)
class Target:
    """The row a read is about, as the access rules judge it.

    Attributes:
        patient_id: Its patient (None: about no patient, always readable).
        owner: The facility owning it (a result's or a study's); None for a patient-level row.
        patient_level: The patient itself or its consent (the caller's own only when its facility filed
            the patient first).
        resource_type: The type its audit entry names, when the read was asked by another (the result
            found for a study).
        resource_id: The id its audit entry names, likewise.
    """

    patient_id: str | None
    owner: str | None
    patient_level: bool = False
    resource_type: str | None = None
    resource_id: str | None = None


@dataclass(frozen=True, slots=True)
class Audited(Generic[T]):
    """What an audited read gave: its entry's outcome and the data, served only on a ground.

    Attributes:
        outcome: ``success`` or ``break_glass`` (served); ``denied`` (no ground), ``not_found``, or
            ``failure`` (the data could not be made into what was asked: :attr:`error`).
        value: The data read (None unless served, or when what was asked does not exist).
        patient_id: The patient the entry names.
        resource_id: The id the entry names.
        error: Why the read failed (outcome ``failure``).
    """

    outcome: str
    value: T | None
    patient_id: str | None
    resource_id: str | None
    error: Exception | None = None

    @property
    def served(self) -> bool:
        """True when the caller may be given :attr:`value`."""
        return self.outcome in SERVED


def outcome_of(ground: str | None) -> str:
    """The outcome an access on ``ground`` (None: none) is audited with."""
    if ground is None:
        return DENIED
    return BREAK_GLASS if ground == _scope.BREAK_GLASS else SUCCESS


@contextmanager
def audited_transaction(db: Database) -> Iterator[tuple[Session, Any]]:
    """A transaction for an audited read: the audit chain's head locked first (the write lock on SQLite),
    yielded with the session for :func:`_audit.append_onto` / :func:`_audit.append_all_onto`.

    Raises:
        RecordError: The record failed, or the read's entries could not be written or committed: nothing
            read in it may be served.
    """
    try:
        with db.transaction() as session:
            session.connection(execution_options={IMMEDIATE: True})
            yield session, _audit.lock_head_row(session)
    except SQLAlchemyError as e:
        raise RecordError("The read could not be audited; nothing was served.") from e


def read_audited(
    db: Database,
    *,
    scope: _scope.Scope,
    audit: AuditIn,
    resource_type: str,
    resource_id: str | None,
    locate: Callable[[Session], Target | None],
    fetch: Callable[[Session, Target], T | None],
    failures: tuple[type[Exception], ...] = (),
) -> Audited[T]:
    """Check the caller's ground on one row, read it and audit the access, in one transaction.

    Args:
        db: The record's database.
        scope: The caller's grounds (:func:`inference.security.scope_for`).
        audit: Who reads, and the action.
        resource_type: The entry's resource type.
        resource_id: The entry's resource id (a :class:`Target` may name another).
        locate: The row's patient and owner; None when there is no such row (audited ``not_found``,
            without a patient).
        fetch: The data, read once the ground is found; None when it does not exist (audited
            ``not_found``, with the patient).
        failures: Errors of ``fetch`` that say the data cannot be served (a damaged stored picture):
            audited ``failure`` and returned in :attr:`Audited.error`, in the same transaction.

    Returns:
        The outcome and, on a ground, the data (committed with its entry).

    Raises:
        RecordError: The record failed, or the entry could not be written: nothing is served.
    """
    with audited_transaction(db) as (session, head):
        target = locate(session)
        value: T | None = None
        error: Exception | None = None
        patient_id: str | None = None
        if target is None:
            outcome = NOT_FOUND
        else:
            patient_id = target.patient_id
            resource_type = target.resource_type or resource_type
            resource_id = target.resource_id or resource_id
            outcome = outcome_of(_ground(session, scope, target))
            if outcome in SERVED:
                try:
                    value = fetch(session, target)
                except failures as e:
                    outcome, error = FAILURE, e
                else:
                    if value is None:
                        outcome = NOT_FOUND
        entry = _audit.columns_of(
            audit,
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=patient_id,
            outcome=outcome,
        )
        _audit.append_onto(session, head, **entry)
    return Audited(outcome=outcome, value=value, patient_id=patient_id, resource_id=resource_id, error=error)


def _ground(session: Session, scope: _scope.Scope, target: Target) -> str | None:
    if target.patient_id is None:
        return _scope.OWN
    return _scope.basis(
        session,
        scope,
        patient_id=target.patient_id,
        owner=target.owner,
        patient_level=target.patient_level,
    )


def grounds_of(session: Session, scope: _scope.Scope, rows: Sequence[Target]) -> set[str]:
    """The patients of which one of ``rows`` is read on no other ground than break-the-glass (their
    entries say ``break_glass``), judged in ``session``'s transaction."""
    glass: set[str] = set()
    for row in dict.fromkeys(rows):
        if row.patient_id is None or row.patient_id in glass:
            continue
        if _ground(session, scope, row) == _scope.BREAK_GLASS:
            glass.add(row.patient_id)
    return glass


@dataclass(frozen=True, slots=True)
class Disclosure:
    """What a listing disclosed: the patients listed (in order), and the rows each is listed with (as
    the access rules judge them; only those of patients under the caller's break-the-glass grant are
    judged, to tell an entry ``break_glass`` from ``success``).

    Attributes:
        patients: The patients listed.
        rows: The rows listed, or a function giving those of the patients it is given (the patients under
            a grant: rows whose owner must be looked up are looked up for those only).
    """

    patients: Sequence[str]
    rows: Sequence[Target] | Callable[[set[str]], Sequence[Target]] = ()


def read_listing(
    db: Database,
    *,
    scope: _scope.Scope,
    audit: AuditIn,
    resource_type: str,
    fetch: Callable[[Session], T],
    disclosed: Callable[[Session, T], Disclosure],
) -> T:
    """A read of several patients' data at once (a worklist, a search), audited in its transaction: one
    entry per patient disclosed (``break_glass`` for one of which a row is read on no other ground, else
    ``success``), or one entry naming no patient when it disclosed nobody.

    ``fetch`` reads only what the caller may read (its query is scoped: :func:`_scope.visible`);
    ``disclosed`` says whom it disclosed, in the same transaction.

    Raises:
        RecordError: The record failed, or the entries could not be written: nothing is served.
    """
    with audited_transaction(db) as (session, head):
        value = fetch(session)
        shown = disclosed(session, value)
        unique: list[str | None] = [*dict.fromkeys(shown.patients)] or [None]
        granted = _scope.granted(session, scope, [p for p in unique if p is not None])
        rows = shown.rows(granted) if callable(shown.rows) else shown.rows
        glass = grounds_of(session, scope, [row for row in rows if row.patient_id in granted])
        now = utcnow()
        _audit.append_all_onto(
            session,
            head,
            [
                _audit.columns_of(
                    audit,
                    resource_type=resource_type,
                    resource_id=None,
                    patient_id=patient_id,
                    outcome=BREAK_GLASS if patient_id in glass else SUCCESS,
                    time=now,
                )
                for patient_id in unique
            ],
        )
    return value


WRITERS_GROUNDS: Final = frozenset({_scope.OWN, _scope.EVERYTHING})
"""The grounds that open a row for changing: sharing consent and break-the-glass open it for reading only."""


@dataclass(frozen=True, slots=True)
class Changed(Generic[T]):
    """What an audited change did: its entry's outcome and, when made, what the change returned.

    Attributes:
        outcome: The change's own outcome when made (``success``, or what the change is audited with);
            ``not_found`` (no such row) or ``denied`` (no ground opens the row for changing).
        value: What the change returned (None unless made).
        patient_id: The patient the entry names.
        readable: On ``denied``: the caller may read the row (so may be told why it may not change it).
    """

    outcome: str
    value: T | None
    patient_id: str | None
    readable: bool = False

    @property
    def made(self) -> bool:
        """True when the change was made (and committed with its entry)."""
        return self.outcome not in (DENIED, NOT_FOUND)


def write_audited(
    db: Database,
    *,
    scope: _scope.Scope,
    audit: AuditIn,
    resource_type: str,
    resource_id: str | None,
    locate: Callable[[Session], Target | None],
    change: Callable[[Session, Target], T],
    outcome: str = SUCCESS,
    unknown: str = NOT_FOUND,
) -> Changed[T]:
    """Check the caller's ground to change one row, change it and audit the change, in one transaction.

    A row is changed on its facility's own ground (or by a caller that reads everything, an admin): the
    grounds that open another facility's row (:data:`WRITERS_GROUNDS`) open it for reading only. As for
    :func:`read_audited`, the audit chain's head is locked first, so a consent withdrawn or a grant opened
    by another transaction is wholly before the check or wholly after the change; and the change is
    committed with its entry or not at all.

    Args:
        db: The record's database.
        scope: The caller's grounds (:func:`inference.security.scope_for`).
        audit: Who changes, and the action.
        resource_type: The entry's resource type.
        resource_id: The entry's resource id (a :class:`Target` may name another).
        locate: The row's patient and owner; None when there is no such row (audited ``unknown``,
            without a patient, nothing changed).
        change: The change, made once the ground is found; what it raises rolls the transaction back
            (no entry is written).
        outcome: The entry's outcome when the change is made.
        unknown: The entry's outcome when ``locate`` finds no row (``denied``: a row the caller may not
            create).

    Returns:
        The outcome, and what ``change`` returned when it was made.

    Raises:
        RecordError: The record failed, or the entry could not be written: nothing was changed.
    """
    try:
        with db.transaction() as session:
            session.connection(execution_options={IMMEDIATE: True})
            head = _audit.lock_head_row(session)
            target = locate(session)
            value: T | None = None
            readable = False
            patient_id = None if target is None else target.patient_id
            if target is None:
                outcome = unknown
            else:
                resource_id = target.resource_id or resource_id
                writer = _scope.Scope(
                    subject=scope.subject, facility=scope.facility, grounds=scope.grounds & WRITERS_GROUNDS
                )
                if _ground(session, writer, target) is None:
                    outcome = DENIED
                    readable = _ground(session, scope, target) is not None
                else:
                    value = change(session, target)
                    session.flush()
            entry = _audit.columns_of(
                audit,
                resource_type=resource_type,
                resource_id=resource_id,
                patient_id=patient_id,
                outcome=outcome,
            )
            _audit.append_onto(session, head, **entry)
    except SQLAlchemyError as e:
        raise RecordError("The change could not be audited; nothing was changed.") from e
    return Changed(outcome=outcome, value=value, patient_id=patient_id, readable=readable)
