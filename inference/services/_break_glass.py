"""Break the glass: open an emergency access to a patient's results (audited as such); list them."""

from __future__ import annotations

from typing import Any

from inference.record import NotFound, PatientIn
from inference.security import Role, scope_for
from inference.services._access import audit, audit_entry
from inference.services._context import Actor, Context, db
from inference.services._identity import default_issuer

OPEN = "break-glass:open"
READ = "break-glass:read"


async def open_break_glass(
    *,
    ctx: Context,
    actor: Actor,
    patient_id: str | None,
    patient: PatientIn | None,
    reason: str,
    minutes: int,
) -> dict[str, Any]:
    """Give the caller, for ``minutes``, read access to every result of one patient.

    The grant and its audit entry (outcome ``break_glass``) are committed together; every read it makes
    possible is audited with the outcome ``break_glass`` too, and auditors list grants with their reads.

    Raises:
        NotFound: No such patient.
        InvalidData: A reason or duration outside the accepted range (HTTP 422 ``invalid_value``).
    """
    principal = actor.principal
    if patient_id is None and patient is not None:
        issuer = patient.issuer
        if not (issuer or "").strip() and principal.facility is not None:
            issuer = default_issuer(ctx, principal.facility)
        patient_id = await db(ctx.record.patients.find, identifier=patient.identifier, issuer=issuer)
    if patient_id is None:
        await audit(ctx, actor, action=OPEN, outcome="not_found", resource_type="Patient")
        raise NotFound("No patient has this identifier and issuer.")
    entry = audit_entry(actor, action=OPEN)
    try:
        return await db(
            ctx.record.break_glass.open, patient_id=patient_id, reason=reason, minutes=minutes, audit=entry
        )
    except NotFound:
        await audit(
            ctx, actor, action=OPEN, outcome="not_found", resource_type="Patient", resource_id=patient_id
        )
        raise


async def list_break_glass(
    *, ctx: Context, actor: Actor, active_only: bool, limit: int, offset: int
) -> dict[str, Any]:
    """Grants, newest first. An auditor bound to a facility sees those its staff opened, those on a
    patient it filed first and those that opened one of its results; the listing is audited (one entry
    per patient shown)."""
    principal = actor.principal
    # The page and its entries in one transaction.
    total, items = await db(
        ctx.record.break_glass.read_grants,
        facility=None if principal.role == Role.ADMIN else principal.facility,
        scope=scope_for(principal),
        audit=audit_entry(actor, action=READ),
        active_only=active_only,
        limit=limit,
        offset=offset,
    )
    return {"total": total, "items": items, "limit": limit, "offset": offset}
