"""Facility scoping and the audit trail: every access to patient data leaves an entry, denials too."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from inference.record import (
    BREAK_GLASS,
    DENIED,
    EVERYTHING,
    OWN,
    Audited,
    AuditIn,
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


_REFUSED = (
    "This {what} belongs to another facility than the one your token is bound to, and the patient has not "
    "consented to sharing between facilities. If the patient's care requires it, open a break-the-glass "
    "access (POST /v1/break-glass, with a reason); it is audited and reviewed."
)
_REFUSED_ROLE = "Your role does not read patients' data of this kind on any ground (see docs/security.md)."


def served(actor: Actor, found: Audited[T], *, missing: str, what: str = "result") -> T:
    """The data of a read the record audited (:func:`inference.record._reads.read_audited`), or the
    refusal its entry says.

    Args:
        missing: The message of a read of something that does not exist.
        what: What a refusal calls the row (``result``, ``patient``).

    Raises:
        NotFound: Nothing had this id (audited ``not_found``).
        Forbidden: No ground of the access table lets the caller read it (audited ``denied``).
    """
    if found.outcome == DENIED:
        raise Forbidden(_REFUSED_ROLE if scope_for(actor.principal).none else _REFUSED.format(what=what))
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

    Returns:
        The outcome to audit the access with: ``success``, or ``break_glass`` when that is the only
        ground (so the trail lists every access made through an emergency access).

    Raises:
        Forbidden: No ground of the table lets this caller read the row.
    """
    if patient_id is None:
        return "success"
    scope = scope_for(actor.principal)
    ground = await _ground_or_refuse(
        ctx,
        actor,
        scope,
        action=action,
        patient_id=patient_id,
        owner=owner,
        patient_level=patient_level,
        resource_type=resource_type,
        resource_id=resource_id,
        refusal=_REFUSED_ROLE
        if scope.none
        else _REFUSED.format(what="patient" if patient_level else "result"),
    )
    return "break_glass" if ground == BREAK_GLASS else "success"


async def _ground_or_refuse(
    ctx: Context,
    actor: Actor,
    scope: Scope,
    *,
    action: str,
    patient_id: str,
    owner: str | None,
    patient_level: bool,
    resource_type: str | None,
    resource_id: str | None,
    refusal: str,
) -> str:
    """The ground of ``scope`` that opens the row; without one, the access is audited ``denied`` and
    ``refusal`` raised."""
    ground = await db(
        ctx.record.patients.access_basis,
        scope=scope,
        patient_id=patient_id,
        owner=owner,
        patient_level=patient_level,
    )
    if ground is not None:
        return str(ground)
    await audit(
        ctx,
        actor,
        action=action,
        outcome="denied",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
    )
    raise Forbidden(refusal)


_REFUSED_WRITE = (
    "Only the facility that filed this result (or an administrator) records feedback on it or closes it; "
    "your token's facility did not file it. Sharing consent and break-the-glass open a result for "
    "reading only."
)


async def authorise_write(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    patient_id: str,
    owner: str | None,
    resource_type: str,
    resource_id: str,
    patient_level: bool = False,
    refusal: str = _REFUSED_WRITE,
) -> None:
    """Let the caller change a row only on the own-facility ground (or as an admin); audit a refusal.

    The grounds that open another facility's rows (sharing consent, break-the-glass) open them for
    reading: a verdict, feedback or closing a result belongs to the facility that owns it, and a
    patient-level row (``patient_level``: the patient's consent) to the patient's first facility.

    Args:
        refusal: The message of the refusal (to a caller whose role has a ground to read at all).

    Raises:
        Forbidden: The caller's facility does not own the row (the refusal is audited ``denied``).
    """
    scope = scope_for(actor.principal)
    writer = Scope(subject=scope.subject, facility=scope.facility, grounds=scope.grounds & {OWN, EVERYTHING})
    await _ground_or_refuse(
        ctx,
        actor,
        writer,
        action=action,
        patient_id=patient_id,
        owner=owner,
        patient_level=patient_level,
        resource_type=resource_type,
        resource_id=resource_id,
        refusal=_REFUSED_ROLE if scope.none else refusal,
    )


async def authorise_patient(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    patient_id: str | None,
    resource_type: str | None,
    resource_id: str | None,
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
    )


@dataclass(frozen=True, slots=True)
class Disclosed:
    """One row a read disclosed, as :func:`authorise` judges it: its patient, the facility owning it
    (None for a patient-level row), and whether it is the patient itself (or its consent)."""

    patient_id: str
    owner: str | None
    patient_level: bool = False


async def under_grant(ctx: Context, actor: Actor, patients: Sequence[str]) -> set[str]:
    """The patients among ``patients`` the caller holds an unexpired break-the-glass grant on: the only
    ones whose disclosure :func:`audit_disclosed` needs the rows of."""
    if not patients:
        return set()
    return await db(ctx.record.patients.under_grant, scope=scope_for(actor.principal), patient_ids=patients)


async def audit_disclosed(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    resource_type: str,
    patients: Sequence[str],
    rows: Sequence[Disclosed] = (),
) -> None:
    """Audit a read that disclosed several patients (worklist, searches): one entry per patient.

    Each entry's outcome is the ground used, as for a single read (:func:`authorise`): ``break_glass``
    for a patient of which one of ``rows`` is read on no other ground than break-the-glass, ``success``
    otherwise. ``rows`` need only name the disclosed rows of the patients :func:`under_grant` returns.

    All entries are chained in one transaction; a read that disclosed nobody leaves one entry without
    a patient, so the search itself is still on the trail.
    """
    principal = actor.principal
    unique: list[str | None] = [*dict.fromkeys(patients)] or [None]
    glass: set[str] = set()
    if rows:
        glass = await db(
            ctx.record.patients.glass_only,
            scope=scope_for(principal),
            rows=[(row.patient_id, row.owner, row.patient_level) for row in rows],
        )
    await db(
        ctx.record.audit.append_many,
        entries=[
            {
                "subject": principal.subject,
                "role": principal.role,
                "facility": principal.facility,
                "action": action,
                "resource_type": resource_type,
                "resource_id": None,
                "patient_id": patient_id,
                "outcome": "break_glass" if patient_id in glass else "success",
                "client": actor.client,
            }
            for patient_id in unique
        ],
    )
