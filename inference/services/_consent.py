"""Patient consent: recording a patient's objections, and refusing analysis for a patient who objected."""

from __future__ import annotations

from typing import Any

from inference.record import ConsentObjection, ConsentState, NotFound, PatientIn, RecordError
from inference.security import Forbidden, Role, scope_for
from inference.services._access import UNSEEN_PATIENT, audit, audit_entry, served, written
from inference.services._context import Actor, Context, db
from inference.services._identity import identify

_NOT_FIRST = (
    "Only the facility that filed this patient first (or an administrator) records its consent; your token's "
    "facility did not file it first. Ask that facility to record the patient's choices."
)
_OBJECTION = (
    "The patient has objected to AI processing of their data; nothing was analysed. "
    "The objection can be withdrawn by a clinician or an administrator (PUT /v1/patients/{id}/consent)."
)


async def _audit(ctx: Context, actor: Actor, *, action: str, outcome: str, patient_id: str) -> None:
    """The audit entry of a read, write or refusal touching a patient's consent."""
    await audit(
        ctx,
        actor,
        action=action,
        outcome=outcome,
        resource_type="Consent",
        resource_id=patient_id,
        patient_id=patient_id,
    )


async def refuse_objection(ctx: Context, actor: Actor, *, found: ConsentState | None, action: str) -> None:
    """Refuse, before any analysis, a study or vital signs of a patient who objected to AI processing,
    on the consent the request's first round trip read (``None``: a patient the record does not know).

    The refusal is written to the audit trail (outcome ``consent_objection``); a consent that allows is
    not audited here: the filing that follows is (its entry names the patient), and nothing is filed
    without it.

    Raises:
        ConsentObjection: The patient objected (the refusal is audited first).
    """
    if found is None or found.ai_processing:
        return
    await _audit(ctx, actor, action=action, outcome="consent_objection", patient_id=found.patient_id)
    raise ConsentObjection(_OBJECTION)


async def get_consent(*, ctx: Context, actor: Actor, patient_id: str) -> dict[str, Any]:
    """A patient's consent (``permit`` for a purpose nobody recorded an objection to).

    The read is audited ``break_glass`` when only the caller's break-the-glass grant opens the patient
    (so it is counted on the grant and reviewed with it), ``success`` otherwise.

    Raises:
        NotFound: No patient has this id, or none the caller may read (one answer, audited
            ``not_found`` or ``denied``).
    """
    found = await db(
        ctx.record.consent.read,
        patient_id=patient_id,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action="consent:read"),
    )
    return served(actor, found, missing=UNSEEN_PATIENT, hidden=UNSEEN_PATIENT).public()


async def set_consent(
    *,
    ctx: Context,
    actor: Actor,
    patient_id: str,
    ai_processing: bool,
    national_sharing: bool,
    facility_sharing: bool | None = None,
) -> dict[str, Any]:
    """Record a known patient's choices (``True``: allowed); the change is audited.

    Only the patient's first facility (the one that filed it first) or an admin records its choices:
    filing a result of another facility's patient does not, and neither do sharing or break-the-glass,
    which open reading, not writing.

    Raises:
        NotFound: No patient has this id, or none the caller may read (one answer; audited).
        Forbidden: The caller's facility is not the patient's first facility, and the caller reads the
            patient (under sharing consent or break-the-glass; the refusal is audited).
        RecordError: The audit entry could not be written; nothing changed.
    """
    # The check, the choices and their entry (or the refusal's) in one transaction, audit head locked
    # first: a grant or a sharing consent changed meanwhile is wholly before or wholly after them, and an
    # entry refused leaves the choices as they were.
    changed = await db(
        ctx.record.consent.set_checked,
        patient_id=patient_id,
        ai_processing=ai_processing,
        national_sharing=national_sharing,
        facility_sharing=facility_sharing,
        by=actor.principal.subject,
        role=actor.principal.role,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action="consent:write"),
    )
    state = written(actor, changed, refusal=_NOT_FIRST, hidden=UNSEEN_PATIENT)
    if state is None:  # written returns the change's value whenever it was made
        raise RecordError("The consent could not be recorded; nothing changed.")
    return state.public()


async def set_consent_by_identifier(
    *,
    ctx: Context,
    actor: Actor,
    patient: PatientIn,
    ai_processing: bool,
    national_sharing: bool,
    facility_sharing: bool | None = None,
) -> dict[str, Any]:
    """Record the choices of the patient ``(identifier, issuer)``, filing the patient first when unknown.

    So an objection can be recorded before the patient's first study arrives. The issuer is normalised
    and defaults to the caller's facility's issuer, as for studies and vital signs, so the consent binds
    the patient however the sender spells the issuer. A new patient is filed by the caller's facility,
    unless its issuer is another facility's own (``DXASSIST_FACILITY_ISSUERS``): that facility's patient,
    whose consent only it (or an admin) records.

    Raises:
        Forbidden: The token names no facility, the patient is known and the caller's facility is not
            its first facility, or the patient is unknown and its issuer is another facility's own (the
            refusal is audited).
        RecordError: The audit entry could not be written; nothing was filed or changed.
    """
    patient = identify(ctx, actor, patient)
    # The lookup, the filing of an unknown patient, the check, the choices and the entry (or the
    # refusal's) in one transaction, audit head locked first: no patient row is read unaudited, and a
    # patient filed or changed meanwhile is wholly before the lookup or wholly after the entry.
    changed = await db(
        ctx.record.consent.set_by_identifier,
        patient=PatientIn(**_keys(patient)),
        # A patient of another facility's own issuer is that facility's once filed: its consent is not
        # this caller's to record (else any facility could pre-file the next identifiers of another and
        # open their results to everyone, or block their analysis).
        may_file=patient.home_facility is None or actor.principal.role == Role.ADMIN,
        ai_processing=ai_processing,
        national_sharing=national_sharing,
        facility_sharing=facility_sharing,
        by=actor.principal.subject,
        role=actor.principal.role,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action="consent:write"),
    )
    try:
        state = written(actor, changed, refusal=_NOT_FIRST, hidden=_NOT_FIRST)
    except NotFound as e:
        # A patient on file the caller may not read, or one of another facility's own issuer not on file
        # (audited ``denied``): answered as any patient whose consent is not the caller's to record, so
        # whether the record knows the identifier is not told.
        raise Forbidden(_NOT_FIRST) from e
    if state is None:  # written returns the change's value whenever it was made
        raise RecordError("The consent could not be recorded; nothing changed.")
    return state.public()


def _keys(patient: PatientIn) -> dict[str, Any]:
    # Only what identifies and scopes the patient: demographics arrive with their data, not with consent.
    return {
        "identifier": patient.identifier,
        "issuer": patient.issuer,
        "facility": patient.facility,
        "home_facility": patient.home_facility,
    }
