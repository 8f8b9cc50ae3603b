"""What a caller may read, as SQL: the access rules of ``docs/security.md`` turned into WHERE clauses.

A :class:`Scope` says on which grounds a caller reads patient data (it is made from the access table by
:func:`inference.security.scope_for`); the functions here turn it into a condition over a result's owning
facility and its patient, so searches, totals, pages and the worklist count only what the caller may
read, and :func:`basis` names the ground one access rests on (for the audit trail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, exists, false, or_, select, true
from sqlalchemy.orm import Session, aliased

from inference.record._models import BreakGlass, Consent, Patient, Result
from inference.record._types import utcnow

OWN: Final = "own_facility"
SHARED: Final = "sharing_consent"
BREAK_GLASS: Final = "break_glass"
EVERYTHING: Final = "everything"
BASES: Final[tuple[str, ...]] = (OWN, SHARED, BREAK_GLASS, EVERYTHING)
"""The grounds of an access, in the order they are tried."""


@dataclass(frozen=True)
class Scope:
    """On which grounds a caller reads patient data.

    Attributes:
        subject: The caller (break-the-glass grants are personal).
        facility: The caller's facility (None: bound to none, so nothing is its own).
        grounds: Subset of :data:`BASES` the caller's role may use.
    """

    subject: str
    facility: str | None
    grounds: frozenset[str]

    @property
    def none(self) -> bool:
        """True when the caller reads no patient data at all."""
        return not self.grounds


def _shared(patient: Any) -> Any:
    return exists(select(Consent.patient_id).where(Consent.patient_id == patient, Consent.facility_sharing))


def _holder(scope: Scope) -> Any:
    """SQL condition: the grant was opened by this caller, for the facility it reads for now.

    A grant is personal and opened for one facility's care (its reason is that facility's, its auditor
    reviews it): the same subject reading for another facility (a locum's second token) needs its own.
    """
    facility = (
        BreakGlass.facility.is_(None) if scope.facility is None else BreakGlass.facility == scope.facility
    )
    return and_(BreakGlass.subject == scope.subject, facility)


def _glass(scope: Scope, patient: Any, now: datetime) -> Any:
    return exists(
        select(BreakGlass.id).where(
            BreakGlass.patient_id == patient, _holder(scope), BreakGlass.expires_at > now
        )
    )


def _first_facility(facility: str, patient: Any) -> Any:
    # A patient is its first facility's own (the one that filed it first): filing a result of someone
    # else's patient gives no hold on the patient, or any facility could take one over by filing a
    # result under its identifier. The alias keeps the subquery from correlating with an outer query on
    # the same table.
    filed = aliased(Patient)
    return exists(select(filed.id).where(filed.id == patient, filed.facility == facility))


def visible(scope: Scope, *, owner: Any, patient: Any, now: datetime | None = None) -> Any:
    """SQL condition: the row owned by ``owner`` (a facility column) about ``patient`` may be read.

    ``owner`` None means a patient-level row (the Patient itself, its consent): it is the caller's own
    only when the caller's facility filed the patient first (``Patient.facility``); a facility that only
    filed results of the patient reads those results, not the patient.
    """
    if EVERYTHING in scope.grounds:
        return true()
    now = now or utcnow()
    conditions = []
    if OWN in scope.grounds and scope.facility is not None:
        conditions.append(
            _first_facility(scope.facility, patient) if owner is None else owner == scope.facility
        )
    if SHARED in scope.grounds:
        conditions.append(_shared(patient))
    if BREAK_GLASS in scope.grounds:
        conditions.append(_glass(scope, patient, now))
    return or_(*conditions) if conditions else false()


def results_visible(scope: Scope, now: datetime | None = None) -> Any:
    """SQL condition on :class:`Result` rows."""
    return visible(scope, owner=Result.facility, patient=Result.patient_id, now=now)


def basis(
    session: Session, scope: Scope, *, patient_id: str, owner: str | None, patient_level: bool
) -> str | None:
    """The first ground (of :data:`BASES`) on which the caller reads this row; None: it may not."""
    if EVERYTHING in scope.grounds:
        return EVERYTHING
    now = utcnow()
    if OWN in scope.grounds and scope.facility is not None:
        if patient_level:
            if session.scalar(select(_first_facility(scope.facility, patient_id))):
                return OWN
        elif owner == scope.facility:
            return OWN
    if SHARED in scope.grounds and session.scalar(select(_shared(patient_id))):
        return SHARED
    if BREAK_GLASS in scope.grounds and session.scalar(select(_glass(scope, patient_id, now))):
        return BREAK_GLASS
    return None


def granted(session: Session, scope: Scope, patient_ids: Sequence[str]) -> set[str]:
    """The patients among ``patient_ids`` that the caller may read through its own unexpired
    break-the-glass grant (none for a caller whose role does not use that ground, or reads everything)."""
    if EVERYTHING in scope.grounds or BREAK_GLASS not in scope.grounds or not patient_ids:
        return set()
    return set(
        session.scalars(
            select(BreakGlass.patient_id)
            .where(
                BreakGlass.patient_id.in_(set(patient_ids)),
                _holder(scope),
                BreakGlass.expires_at > utcnow(),
            )
            .distinct()
        )
    )


def active_grant(session: Session, scope: Scope, patient_id: str) -> BreakGlass | None:
    """The caller's newest break-the-glass grant on a patient that has not expired yet."""
    return session.scalars(
        select(BreakGlass)
        .where(
            and_(
                BreakGlass.patient_id == patient_id,
                _holder(scope),
                BreakGlass.expires_at > utcnow(),
            )
        )
        .order_by(BreakGlass.expires_at.desc())
        .limit(1)
    ).first()
