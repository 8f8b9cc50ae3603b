"""Facility scoping and the audit trail: every access to patient data leaves an entry, denials too."""

from __future__ import annotations

import logging
from typing import Final, TypeVar

from inference.record import (
    BREAK_GLASS,
    DENIED,
    Audited,
    AuditIn,
    Changed,
    NotFound,
    RecordError,
    Scope,
)
from inference.security import Forbidden, scope_for
from inference.services._context import Actor, Context, db

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def audit(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    outcome: str,
    resource_type: str | None = None,
    resource_id: str | None = None,
    patient_id: str | None = None,
) -> None:
    """Append one audit event (who, role, facility, action, resource, patient, outcome, client).

    Raises:
        RecordError: The event could not be written; the caller's request then fails, because an
            access that cannot be audited must not happen.
    """
    principal = actor.principal
    await db(
        ctx.record.audit.append,
        subject=principal.subject,
        role=principal.role,
        facility=principal.facility,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        outcome=outcome,
        client=actor.client,
    )


def audit_entry(actor: Actor, *, action: str) -> AuditIn:
    """Who does what, for the record to write the audit entry of a change in the change's own
    transaction (the change is committed with its entry or not at all)."""
    principal = actor.principal
    return AuditIn(
        subject=principal.subject,
        role=principal.role,
        facility=principal.facility,
        action=action,
        client=actor.client,
    )


async def audit_denial(ctx: Context, actor: Actor, *, action: str) -> None:
    """Record a refused access (wrong role); never raises, the caller is answered 403 anyway."""
    try:
        await audit(ctx, actor, action=action, outcome="denied")
    except RecordError:
        logger.error("could not write the audit event of a denied access", extra={"permission": action})


_UNSEEN = (
    "No {what} is open to you: {none}, or it belongs to another facility and no ground opens it to you "
    "(your facility's, the patient's consent to sharing between facilities, your break-the-glass access). "
    "If the patient's care requires it, open a break-the-glass access (POST /v1/break-glass, with a "
    "reason); it is audited and reviewed."
)
_REFUSED_ROLE = "Your role does not read patients' data of this kind on any ground (see docs/security.md)."


def unseen(what: str, *, none: str = "none exists") -> str:
    """The answer (404 ``not_found``) to a read of a ``what`` (a result, a patient, a FHIR resource) that
    does not exist, and to one that no ground opens to the caller: the same words, so that the answer
    does not tell a caller that another facility's row exists (the trail says which it was: ``not_found``
    or ``denied``).

    Args:
        what: The row asked for ("No *result with this id* is open to you").
        none: How the sentence says that there is no such row.
    """
    return _UNSEEN.format(what=what, none=none)


UNSEEN_RESULT: Final = unseen("result with this id")
UNSEEN_PATIENT: Final = unseen("patient with this id")


def served(actor: Actor, found: Audited[T], *, missing: str, hidden: str = UNSEEN_RESULT) -> T:
    """The data of a read the record audited (:func:`inference.record._reads.read_audited`), or the
    refusal its entry says.

    Args:
        missing: The message of a read of a row the caller may read that holds nothing to serve (a
            result without that heatmap, a study without a result).
        hidden: The message of a read of a row that does not exist or that no ground opens to the
            caller: one answer for both (:func:`unseen`).

    Raises:
        NotFound: Nothing had this id (audited ``not_found``), or no ground of the access table lets the
            caller read it (audited ``denied``).
        Forbidden: The caller's role reads no patient data on any ground.
    """
    if not found.served and scope_for(actor.principal).none:
        raise Forbidden(_REFUSED_ROLE)
    if found.outcome == DENIED or (not found.served and found.patient_id is None):
        raise NotFound(hidden)
    if not found.served or found.value is None:
        raise NotFound(missing)
    return found.value


async def authorise(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    patient_id: str | None,
    owner: str | None,
    patient_level: bool = False,
    resource_type: str | None,
    resource_id: str | None,
    hidden: str | None = None,
) -> str:
    """Let the caller read a row on a ground of the access table, or refuse (and audit the refusal).

    Args:
        ctx: The process's engines.
        actor: Who asks.
        action: The permission used (for the audit entry).
        patient_id: The patient the row is about (None: no patient, e.g. a Device; always allowed).
        owner: The facility owning the row (a result's or a study's facility).
        patient_level: The row is the patient itself (or its consent): it counts as the caller's own only
            when the caller's facility filed the patient first (filing one of its results is not enough).
        resource_type: For the audit entry.
        resource_id: For the audit entry.
        hidden: The message of the refusal, the caller's answer to a row that does not exist too (default:
            :func:`unseen` of a result, or of a patient for a patient-level row).

    Returns:
        The outcome to audit the access with: ``success``, or ``break_glass`` when that is the only
        ground (so the trail lists every access made through an emergency access).

    Raises:
        NotFound: No ground of the table lets this caller read the row (audited ``denied``): answered
            as a row that does not exist is, so that the caller does not learn that it exists.
        Forbidden: The caller's role reads no patient data on any ground.
    """
    if patient_id is None:
        return "success"
    scope = scope_for(actor.principal)
    ground = await _ground(ctx, scope, patient_id=patient_id, owner=owner, patient_level=patient_level)
    if ground is None:
        await audit(
            ctx,
            actor,
            action=action,
            outcome="denied",
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=patient_id,
        )
        if scope.none:
            raise Forbidden(_REFUSED_ROLE)
        raise NotFound(hidden or (UNSEEN_PATIENT if patient_level else UNSEEN_RESULT))
    return "break_glass" if ground == BREAK_GLASS else "success"


async def _ground(
    ctx: Context, scope: Scope, *, patient_id: str, owner: str | None, patient_level: bool
) -> str | None:
    """The ground of ``scope`` that opens the row; None: none does."""
    ground = await db(
        ctx.record.patients.access_basis,
        scope=scope,
        patient_id=patient_id,
        owner=owner,
        patient_level=patient_level,
    )
    return None if ground is None else str(ground)


_REFUSED_WRITE = (
    "Only the facility that filed this result (or an administrator) records feedback on it or closes it; "
    "your token's facility did not file it. Sharing consent and break-the-glass open a result for "
    "reading only."
)


def written(
    actor: Actor, changed: Changed[T], *, refusal: str = _REFUSED_WRITE, hidden: str = UNSEEN_RESULT
) -> T | None:
    """What a change the record checked and audited in its transaction returned
    (:func:`inference.record._reads.write_audited`), or the refusal its entry says: 403 to a caller who
    may read the row, else the answer to a row that does not exist.

    Raises:
        NotFound: Nothing had this id (audited ``not_found``), or the caller may not even read the row
            (audited ``denied``): one answer.
        Forbidden: The caller's facility does not own the row, which the caller may read (audited
            ``denied``); or the caller's role reads no patient data on any ground.
    """
    if changed.made:
        return changed.value
    if changed.outcome == DENIED and scope_for(actor.principal).none:
        raise Forbidden(_REFUSED_ROLE)
    if changed.outcome == DENIED and changed.readable:
        raise Forbidden(refusal)
    raise NotFound(hidden)


async def authorise_patient(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    patient_id: str | None,
    resource_type: str | None,
    resource_id: str | None,
    hidden: str = UNSEEN_PATIENT,
) -> str:
    """:func:`authorise` for the patient itself (its consent, its Patient resource)."""
    return await authorise(
        ctx,
        actor,
        action=action,
        patient_id=patient_id,
        owner=None,
        patient_level=True,
        resource_type=resource_type,
        resource_id=resource_id,
        hidden=hidden,
    )
