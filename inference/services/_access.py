"""Facility scoping and the audit trail: every access to patient data leaves an entry, denials too."""

from __future__ import annotations

import logging
from typing import Any

from inference.record import RecordError
from inference.security import Forbidden, facility_allows
from inference.services._context import Actor, Context, db

logger = logging.getLogger(__name__)


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
        ctx.record.append_audit,
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


async def audit_denial(ctx: Context, actor: Actor, *, action: str) -> None:
    """Record a refused access (wrong role); never raises, the caller is answered 403 anyway."""
    try:
        await audit(ctx, actor, action=action, outcome="denied")
    except RecordError:
        logger.error("could not write the audit event of a denied access", extra={"permission": action})


async def authorise_patient(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    patient_id: str | None,
    resource_type: str | None,
    resource_id: str | None,
) -> None:
    """Refuse access to a patient managed by another facility than the caller's; audit a refusal.

    Raises:
        Forbidden: The caller's token is bound to another facility than the patient's.
    """
    facility = await db(ctx.record.patient_facility, patient_id=patient_id) if patient_id else None
    principal = actor.principal
    if facility_allows(role=principal.role, facility=principal.facility, patient_facility=facility):
        return
    await audit(
        ctx,
        actor,
        action=action,
        outcome="denied",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
    )
    raise Forbidden(
        "This patient is managed by another facility than the one your token is bound to."
        if principal.facility
        else "Your role may only read patients of the facility named in its token; this token names none."
    )


def localise(result: dict[str, Any], language: str) -> dict[str, Any]:
    """Keep the rationale in ``language`` only (English when that one is missing)."""
    texts = result.get("rationale")
    if isinstance(texts, dict):
        chosen = language if language in texts else "en"
        result = {**result, "rationale": texts.get(chosen), "rationale_language": chosen}
    return result
