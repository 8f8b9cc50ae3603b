"""FHIR R4 reads and searches over the record, facility-scoped and audited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inference.record import NotFound
from inference.record.fhir import SUPPORTED_TYPES
from inference.security import scope_for
from inference.services._access import audit, audit_disclosed, authorise
from inference.services._context import Actor, Context, db

_ACTION = "fhir:read"


def _patient_of(resource: Mapping[str, Any]) -> str | None:
    """The id of the Patient a resource is about (itself for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id"))
    for key in ("subject", "patient"):
        reference = resource.get(key)
        if isinstance(reference, Mapping):
            ref = str(reference.get("reference", ""))
            if ref.startswith("Patient/"):
                return ref.removeprefix("Patient/")
    return None


def _check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(
            f"Resource type '{resource_type[:64]}' is not served; "
            f"supported types are {', '.join(SUPPORTED_TYPES)}."
        )


async def capability(*, ctx: Context, base_url: str) -> dict[str, Any]:
    """The CapabilityStatement of the FHIR views (no patient data: not audited)."""
    return await db(ctx.record.capability_statement, base_url=base_url)


async def fhir_read(*, ctx: Context, actor: Actor, resource_type: str, resource_id: str) -> dict[str, Any]:
    """One resource by type and id, under the access rules (Provenance and Observation included).

    Raises:
        NotFound: Unknown type or id.
        Forbidden: No ground of the access table lets the caller read it.
    """
    _check_type(resource_type)
    owner = await db(ctx.record.fhir_owner, resource_type=resource_type, resource_id=resource_id)
    if owner is None:
        await audit(
            ctx,
            actor,
            action=_ACTION,
            outcome="not_found",
            resource_type=resource_type,
            resource_id=resource_id,
        )
        raise NotFound(f"No {resource_type} has this id.")
    patient_id, facility, patient_level = owner
    outcome = await authorise(
        ctx,
        actor,
        action=_ACTION,
        patient_id=patient_id,
        owner=facility,
        patient_level=patient_level,
        resource_type=resource_type,
        resource_id=resource_id,
    )
    resource = await db(ctx.record.fhir_read, resource_type=resource_type, resource_id=resource_id)
    if resource is None:  # removed between the two reads: only a manual delete could do that
        raise NotFound(f"No {resource_type} has this id.")
    await audit(
        ctx,
        actor,
        action=_ACTION,
        outcome=outcome,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
    )
    return resource


async def fhir_search(
    *,
    ctx: Context,
    actor: Actor,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
    strict: bool = False,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of what the caller may read: the scope is part of the query, so ``total``
    and the pages count nothing else. Every patient the page discloses is written to the audit trail.
    Unsupported parameters are ignored (FHIR R4) unless ``strict`` (``Prefer: handling=strict``).

    Raises:
        NotFound: Unknown resource type.
        InvalidSearch: Unsupported parameter when ``strict``, or a malformed value.
    """
    _check_type(resource_type)
    bundle = await db(
        ctx.record.fhir_search,
        resource_type=resource_type,
        params=params,
        base_url=base_url,
        scope=scope_for(actor.principal),
        strict=strict,
    )
    patients = [p for p in (_patient_of(e.get("resource", {})) for e in bundle.get("entry", [])) if p]
    if resource_type == "Provenance":
        # Provenance names its patient only through its targets: ask the record.
        patients = []
        for entry in bundle.get("entry", []):
            found = await db(
                ctx.record.fhir_owner, resource_type="Provenance", resource_id=str(entry["resource"]["id"])
            )
            if found is not None and found[0] is not None:
                patients.append(found[0])
    await audit_disclosed(ctx, actor, action=_ACTION, resource_type=resource_type, patients=patients)
    return bundle
