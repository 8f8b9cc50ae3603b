"""FHIR R4 reads and searches over the record, facility-scoped and audited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inference import __version__
from inference.record import InvalidSearch, NotFound
from inference.record.fhir import MODEL_SHA256_SYSTEM, SUPPORTED_TYPES, history
from inference.security import scope_for
from inference.services._access import (
    audit_entry,
    served,
    unseen,
)
from inference.services._context import Actor, Context, db
from inference.writers import AlgorithmInfo, device_uid

_ACTION = "fhir:read"
#: DICOM UIDs as FHIR identifiers (R4 Identifier: system urn:dicom:uid, value urn:oid:...).
DICOM_UID_SYSTEM = "urn:dicom:uid"


def _with_device_uid(resource: dict[str, Any], org_root: str) -> dict[str, Any]:
    """A Device with the DICOM Device UID its SRs and Secondary Captures give the same model version.

    The UID is derived from the site's org root (a setting), so it is added here, not in the record.
    """
    if resource.get("resourceType") != "Device":
        return resource
    name = str(resource.get("modelNumber", ""))
    version = str((resource.get("version") or [{}])[0].get("value", ""))
    sha256 = next(
        (str(i["value"]) for i in resource.get("identifier", []) if i.get("system") == MODEL_SHA256_SYSTEM),
        "",
    )
    if not (name and version and sha256):
        return resource
    algorithm = AlgorithmInfo(name=name, version=version, sha256=sha256, software_version=__version__)
    uid = {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{device_uid(org_root, algorithm)}"}
    return {**resource, "identifier": [*resource.get("identifier", []), uid]}


def _device_view(resource: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A Device as served: with its DICOM Device UID (from a setting, so not in the record's row). What
    its model was trained on is the record's (migration 0022; a device filed before that whose results did
    not say it is completed when its version is put into service, as its next version): a read never adds
    what the record does not say, so a Device says nothing its ``meta.versionId`` does not cover.
    """
    return _with_device_uid(resource, ctx.settings.record.org_root)


def _check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(
            f"Resource type '{resource_type[:64]}' is not served; "
            f"supported types are {', '.join(SUPPORTED_TYPES)}."
        )


async def capability(*, ctx: Context, base_url: str) -> dict[str, Any]:
    """The CapabilityStatement of the FHIR views (no patient data: not audited)."""
    return await db(ctx.record.fhir.capability_statement, base_url=base_url)


async def fhir_read(*, ctx: Context, actor: Actor, resource_type: str, resource_id: str) -> dict[str, Any]:
    """One resource by type and id, under the access rules (Provenance and Observation included).

    Raises:
        NotFound: Unknown type or id, or no ground of the access table lets the caller read it (one
            answer; audited ``not_found`` or ``denied``).
    """
    _check_type(resource_type)
    found = await db(
        ctx.record.fhir_reads.read,
        resource_type=resource_type,
        resource_id=resource_id,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action=_ACTION),
    )
    resource = served(
        actor,
        found,
        missing=unseen(f"{resource_type} with this id"),
        hidden=unseen(f"{resource_type} with this id"),
    )
    return _device_view(resource, ctx)


async def fhir_vread(
    *, ctx: Context, actor: Actor, resource_type: str, resource_id: str, version_id: str
) -> dict[str, Any]:
    """One version of a resource (FHIR ``vread``), under the access rules and audited as :func:`fhir_read`
    is. The record keeps the current version only (``meta.versionId``): it is the one served.

    Raises:
        NotFound: Unknown type or id, or no ground lets the caller read it (the words of a read; audited
            ``not_found`` or ``denied``); or another version than the current one (audited
            ``not_found``), saying that only the current version is kept and which it is.
    """
    _check_type(resource_type)
    found, current = await db(
        ctx.record.fhir_reads.vread,
        resource_type=resource_type,
        resource_id=resource_id,
        version_id=version_id,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action=_ACTION),
    )
    if current is not None:
        raise NotFound(
            f"Version {version_id[:64]} of this {resource_type} is not kept: the record keeps only the "
            f"current version of a resource (version {current}); read {resource_type}/{resource_id} or "
            f"its _history/{current}."
        )
    hidden = unseen(f"{resource_type} with this id")
    return _device_view(served(actor, found, missing=hidden, hidden=hidden), ctx)


async def fhir_history(
    *,
    ctx: Context,
    actor: Actor,
    resource_type: str,
    resource_id: str,
    params: Sequence[tuple[str, str]],
    base_url: str,
    strict: bool = False,
) -> dict[str, Any]:
    """A resource's instance ``_history``: a ``history`` Bundle of its current version, the only one the
    record keeps, read (authorised and audited) as :func:`fhir_read` reads it. Its parameters (``_count``,
    ``_since``, ``_at``) change nothing of one version: ignored, unless ``strict``.

    Raises:
        NotFound: As :func:`fhir_read`.
        InvalidSearch: A parameter when ``strict`` (nothing read, nothing audited).
    """
    given = sorted({name for name, _value in params if name != "_format"})
    if strict and given:
        raise InvalidSearch(
            f"Parameter(s) {', '.join(name[:64] for name in given)} not supported by _history here "
            "(Prefer: handling=strict): the record keeps the current version of a resource only, and "
            "the history lists it alone."
        )
    resource = await fhir_read(ctx=ctx, actor=actor, resource_type=resource_type, resource_id=resource_id)
    return history(base_url.rstrip("/"), resource)


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
    and the pages count nothing else. Every patient the page discloses is written to the audit trail; a
    page that lists nothing of a search scoped to one existing patient (``patient=``, or ``_id=`` of a
    Patient search: ``_count=0``, a page past the end, no match) is audited under that patient, and a
    Patient search by demographics or identifier whose page lists none of the patients its total counts
    under those patients (``FhirReads.search``). Unsupported parameters are ignored (FHIR R4)
    unless ``strict`` (``Prefer: handling=strict``).

    Raises:
        NotFound: Unknown resource type.
        InvalidSearch: Unsupported parameter when ``strict``, or a malformed value.
    """
    _check_type(resource_type)
    # The page and its entries in one transaction (``FhirReads.search``).
    bundle = await db(
        ctx.record.fhir_reads.search,
        resource_type=resource_type,
        params=params,
        base_url=base_url,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action=_ACTION),
        strict=strict,
    )
    if resource_type == "Device":
        for entry in bundle.get("entry", []):
            entry["resource"] = _device_view(entry["resource"], ctx)
    return bundle


async def patient_everything(
    *,
    ctx: Context,
    actor: Actor,
    resource_type: str,
    patient_id: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
    strict: bool = False,
) -> dict[str, Any]:
    """Patient ``$everything``: one page of the patient's record as a ``searchset`` Bundle, the Patient
    first, then what the per-type searches with ``patient={id}`` show the caller (nothing else), then the
    Devices (model versions) the page references (``search.mode`` ``include``, with their DICOM Device UID
    as a read of the Device gives it; about no patient, so not audited).

    A patient the caller may read nothing of is answered as ``GET /fhir/Patient/{id}`` is: 404 in the same
    words when unknown (audited ``not_found``) and when no ground opens it (audited ``denied``). Each page
    is audited like the searches: per resource type it discloses, one ``fhir:read`` entry naming the type
    and the patient and no resource (an AuditEvent of type Query), ``break_glass`` where that is the only
    ground.

    Raises:
        NotFound: Unknown resource type, unknown patient, or a patient the caller may read nothing of
            (one answer).
        InvalidSearch: The operation on another type than Patient; an unsupported parameter when
            ``strict``, a malformed value, a ``_type`` outside the patient's record.
    """
    _check_type(resource_type)
    if resource_type != "Patient":
        raise InvalidSearch(
            f"The operation $everything is defined on Patient only (GET /fhir/Patient/{{id}}/$everything); "
            f"{resource_type} has no such operation."
        )
    # The patient's existence, the caller's grounds, the page and its entries: one transaction.
    found = await db(
        ctx.record.fhir_reads.everything,
        patient_id=patient_id,
        params=params,
        base_url=base_url,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action=_ACTION),
        strict=strict,
    )
    hidden = unseen("Patient with this id")
    bundle = served(actor, found, missing=hidden, hidden=hidden)
    for entry in bundle.get("entry", []):
        if entry["search"]["mode"] == "include":  # a Device the page references: about no patient
            entry["resource"] = _device_view(entry["resource"], ctx)
    return bundle
