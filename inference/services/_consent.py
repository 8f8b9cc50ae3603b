"""Patient consent: recording a patient's objections, and refusing analysis for a patient who objected."""

from __future__ import annotations

from typing import Any

from inference.record import ConsentObjection, PatientIn
from inference.services._access import audit, authorise_patient
from inference.services._context import Actor, Context, db

_OBJECTION = (
    "The patient has objected to AI processing of their data; nothing was analysed. "
    "The objection can be withdrawn by a clinician or an administrator (PUT /v1/patients/{id}/consent)."
)


async def check_ai_consent(ctx: Context, actor: Actor, *, patient: PatientIn, action: str) -> None:
    """Refuse, before any analysis, a study or vital signs of a patient who objected to AI processing.

    The refusal is written to the audit trail (outcome ``consent_objection``).

    Raises:
        ConsentObjection: The patient objected (HTTP 409 ``consent_objection``).
    """
    found = await db(ctx.record.consent_for, identifier=patient.identifier, issuer=patient.issuer)
    if found is None or found.ai_processing:
        return
    await audit(
        ctx,
        actor,
        action=action,
        outcome="consent_objection",
        resource_type="Consent",
        resource_id=found.patient_id,
        patient_id=found.patient_id,
    )
    raise ConsentObjection(_OBJECTION)


async def get_consent(*, ctx: Context, actor: Actor, patient_id: str) -> dict[str, Any]:
    """A patient's consent (``permit`` for a purpose nobody recorded an objection to).

    Raises:
        NotFound: No patient has this id.
        Forbidden: The patient belongs to another facility than the caller's token.
    """
    state = await db(ctx.record.consent, patient_id=patient_id)
    await authorise_patient(
        ctx,
        actor,
        action="consent:read",
        patient_id=patient_id,
        resource_type="Consent",
        resource_id=patient_id,
    )
    await audit(
        ctx,
        actor,
        action="consent:read",
        outcome="success",
        resource_type="Consent",
        resource_id=patient_id,
        patient_id=patient_id,
    )
    return state.public()


async def set_consent(
    *, ctx: Context, actor: Actor, patient_id: str, ai_processing: bool, national_sharing: bool
) -> dict[str, Any]:
    """Record a known patient's choices (``True``: allowed); the change is audited.

    Raises:
        NotFound: No patient has this id.
        Forbidden: The patient belongs to another facility than the caller's token.
    """
    await db(ctx.record.consent, patient_id=patient_id)  # NotFound before anything else
    await authorise_patient(
        ctx,
        actor,
        action="consent:write",
        patient_id=patient_id,
        resource_type="Consent",
        resource_id=patient_id,
    )
    state = await db(
        ctx.record.set_consent,
        patient_id=patient_id,
        ai_processing=ai_processing,
        national_sharing=national_sharing,
        by=actor.principal.subject,
        role=actor.principal.role,
    )
    await audit(
        ctx,
        actor,
        action="consent:write",
        outcome="success",
        resource_type="Consent",
        resource_id=patient_id,
        patient_id=patient_id,
    )
    return state.public()


async def set_consent_by_identifier(
    *, ctx: Context, actor: Actor, patient: PatientIn, ai_processing: bool, national_sharing: bool
) -> dict[str, Any]:
    """Record the choices of the patient ``(identifier, issuer)``, filing the patient first when unknown.

    So an objection can be recorded before the patient's first study arrives. A new patient takes the
    caller's facility when the request names none.

    Raises:
        Forbidden: The patient is known and belongs to another facility than the caller's token.
    """
    if patient.facility is None and actor.principal.facility is not None:
        patient = PatientIn(
            identifier=patient.identifier, issuer=patient.issuer, facility=actor.principal.facility
        )
    known = await db(ctx.record.consent_for, identifier=patient.identifier, issuer=patient.issuer)
    if known is None:
        patient_id = await db(ctx.record.register_patient, patient=PatientIn(**_keys(patient)))
    else:
        patient_id = known.patient_id
    return await set_consent(
        ctx=ctx,
        actor=actor,
        patient_id=patient_id,
        ai_processing=ai_processing,
        national_sharing=national_sharing,
    )


def _keys(patient: PatientIn) -> dict[str, Any]:
    # Only what identifies and scopes the patient: demographics arrive with their data, not with consent.
    return {"identifier": patient.identifier, "issuer": patient.issuer, "facility": patient.facility}
