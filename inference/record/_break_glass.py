"""Break-the-glass grants: one person's reasoned, time-limited access to one patient's results.

A grant is written with its audit entry (action ``break-glass:open``) in one transaction; every read it
makes possible is audited with the outcome ``break_glass``. Auditors list grants with the accesses made
under each.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from inference.record import _audit
from inference.record._errors import InvalidData, NotFound
from inference.record._inputs import AuditIn
from inference.record._models import AuditEvent, BreakGlass, Patient
from inference.record._types import iso, new_id, utcnow

MAX_MINUTES: Final = 24 * 60
REASON_MIN: Final = 10
REASON_MAX: Final = 500


def open_grant(
    session: Session, *, patient_id: str, reason: str, minutes: int, audit: AuditIn
) -> dict[str, Any]:
    """File a grant for ``audit.subject`` on a patient and its audit entry; return the grant.

    Raises:
        NotFound: No patient has this id.
        InvalidData: A reason too short or too long (only visible characters count: spaces, zero-width
            and bidirectional formatting characters say nothing), or a duration outside 1 minute to 24
            hours. The caller's input is at fault (HTTP 422), never the record.
    """
    reason = reason.strip()
    if not REASON_MIN <= len(reason) <= REASON_MAX or _visible(reason) < REASON_MIN:
        raise InvalidData(
            f"A break-the-glass access needs a reason of {REASON_MIN} to {REASON_MAX} characters, at least "
            f"{REASON_MIN} of them visible (not spaces or formatting characters), saying why the patient's "
            "care requires it."
        )
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidData(f"A break-the-glass access lasts from 1 to {MAX_MINUTES} minutes.")
    if session.get(Patient, patient_id) is None:
        raise NotFound("No patient has this id.")
    now = utcnow()
    grant = BreakGlass(
        id=new_id(),
        subject=audit.subject,
        role=audit.role,
        facility=audit.facility,
        patient_id=patient_id,
        reason=reason,
        opened_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    session.add(grant)
    session.flush()
    _audit.append(
        session,
        **_audit.columns_of(
            audit,
            resource_type="BreakGlass",
            resource_id=grant.id,
            patient_id=patient_id,
            outcome="break_glass",
            time=now,
        ),
    )
    return public(grant, accesses=0, now=now)


def _visible(text: str) -> int:
    """How many characters of ``text`` a reviewer sees: letters, marks, digits, punctuation, symbols."""
    return sum(1 for ch in text if unicodedata.category(ch)[0] in "LMNPS")


def public(grant: BreakGlass, *, accesses: int, now: datetime) -> dict[str, Any]:
    """The API form of a grant."""
    return {
        "grant_id": grant.id,
        "patient_id": grant.patient_id,
        "subject": grant.subject,
        "role": grant.role,
        "facility": grant.facility,
        "reason": grant.reason,
        "opened_at": iso(grant.opened_at),
        "expires_at": iso(grant.expires_at),
        "active": grant.expires_at > now,
        "accesses": accesses,
    }


def listing(
    session: Session, *, facility: str | None, active_only: bool, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """Grants, newest first, with how many reads each made possible: ``(total, page)``.

    Args:
        facility: Only the grants this facility's auditor reviews (:func:`inference.record._audit.grants_of`):
            those its staff opened, those on a patient it filed first, and those that opened one of its
            results (it had filed a result of the patient before the grant expired); the same grants its
            auditor reads on the audit trail. None: every grant.
    """
    now = utcnow()
    conditions: list[Any] = []
    if facility is not None:
        conditions.append(_audit.grants_of(facility))
    if active_only:
        conditions.append(BreakGlass.expires_at > now)
    total = int(session.scalar(select(func.count()).select_from(BreakGlass).where(*conditions)) or 0)
    grants = list(
        session.scalars(
            select(BreakGlass)
            .where(*conditions)
            .order_by(BreakGlass.opened_at.desc(), BreakGlass.id)
            .limit(limit)
            .offset(offset)
        )
    )
    out = []
    for grant in grants:
        accesses = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                and_(
                    AuditEvent.subject == grant.subject,
                    # Reads the grant made: its holder's, for the facility it was opened for.
                    AuditEvent.facility.is_(None)
                    if grant.facility is None
                    else AuditEvent.facility == grant.facility,
                    AuditEvent.patient_id == grant.patient_id,
                    AuditEvent.outcome == "break_glass",
                    AuditEvent.action != "break-glass:open",
                    AuditEvent.time >= grant.opened_at,
                    AuditEvent.time <= grant.expires_at,
                )
            )
        )
        out.append(public(grant, accesses=int(accesses or 0), now=now))
    return total, out
