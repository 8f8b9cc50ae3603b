"""FHIR R4 reads and searches over the record, facility-scoped and audited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inference.record import NotFound
from inference.record.fhir import SUPPORTED_TYPES
from inference.security import facility_allows
from inference.services._access import audit, authorise_patient
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
    """One resource by type and id.

    Raises:
        NotFound: Unknown type or id.
        Forbidden: The resource is about a patient of another facility than the caller's token.
    """
    _check_type(resource_type)
    resource = await db(ctx.record.fhir_read, resource_type=resource_type, resource_id=resource_id)
    if resource is None:
        await audit(
            ctx,
            actor,
            action=_ACTION,
            outcome="not_found",
            resource_type=resource_type,
            resource_id=resource_id,
        )
        raise NotFound(f"No {resource_type} has this id.")
    patient_id = _patient_of(resource)
    await authorise_patient(
        ctx,
        actor,
        action=_ACTION,
        patient_id=patient_id,
        resource_type=resource_type,
        resource_id=resource_id,
    )
    await audit(
        ctx,
        actor,
        action=_ACTION,
        outcome="success",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
    )
    return resource


async def fhir_search(
    *, ctx: Context, actor: Actor, resource_type: str, params: Mapping[str, str], base_url: str
) -> dict[str, Any]:
    """A ``searchset`` Bundle. Entries about patients of another facility than a facility-bound caller's
    are left out (``total`` is reduced by the entries left out of this page).

    Raises:
        NotFound: Unknown resource type.
        InvalidSearch: Unsupported parameter or malformed value.
    """
    _check_type(resource_type)
    bundle = await db(ctx.record.fhir_search, resource_type=resource_type, params=params, base_url=base_url)
    entries = list(bundle.get("entry", []))
    patients = {p for p in (_patient_of(e.get("resource", {})) for e in entries) if p}
    principal = actor.principal
    refused: set[str] = set()
    for patient_id in patients:
        facility = await db(ctx.record.patient_facility, patient_id=patient_id)
        if not facility_allows(role=principal.role, facility=principal.facility, patient_facility=facility):
            refused.add(patient_id)
    if refused:
        kept = [e for e in entries if _patient_of(e.get("resource", {})) not in refused]
        bundle = {
            **bundle,
            "entry": kept,
            "total": max(0, int(bundle.get("total", 0)) - (len(entries) - len(kept))),
        }
    shown = patients - refused
    await audit(
        ctx,
        actor,
        action=_ACTION,
        outcome="success",
        resource_type=resource_type,
        patient_id=next(iter(shown)) if len(shown) == 1 else None,
    )
    return bundle
