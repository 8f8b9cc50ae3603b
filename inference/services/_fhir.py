"""FHIR R4 reads and searches over the record, facility-scoped and audited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inference import __version__
from inference import vocabulary as v
from inference.record import InvalidSearch, NotFound
from inference.record.fhir import MODEL_SHA256_SYSTEM, SUPPORTED_TYPES
from inference.security import scope_for
from inference.services._access import (
    Disclosed,
    audit,
    audit_disclosed,
    audit_entry,
    authorise_patient,
    served,
    under_grant,
    unseen,
)
from inference.services._context import Actor, Context, db
from inference.services._warnings import training
from inference.writers import AlgorithmInfo, device_uid

_ACTION = "fhir:read"
#: DICOM UIDs as FHIR identifiers (R4 Identifier: system urn:dicom:uid, value urn:oid:...).
DICOM_UID_SYSTEM = "urn:dicom:uid"
#: Device.property.type of the data set a model was trained on (a local code: no standard one exists).
TRAINING_DATA_CODING: dict[str, str] = {
    "system": v.LOCAL,
    "code": "training-data",
    "display": "Data set the model was trained on",
}


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
    """A Device as served: its DICOM Device UID and, when its model version is in service, what that model
    was trained on (``note``: the sentence every result of that model carries; ``property``
    ``training-data``: the data-set line of its ONNX metadata, without the folders it names). Neither is
    in the record's row: the UID comes from a setting, the training statement from the model file.
    """
    resource = _with_device_uid(resource, ctx.settings.record.org_root)
    if resource.get("resourceType") != "Device":
        return resource
    identifiers = {str(i.get("value")) for i in resource.get("identifier", [])}
    version = str((resource.get("version") or [{}])[0].get("value", ""))
    model = next(
        (
            m
            for m in ctx.host.models()
            if m.name == resource.get("modelNumber") and m.version == version and m.sha256 in identifiers
        ),
        None,
    )
    if model is None:
        return resource
    out = {**resource, "note": [{"text": training(model)}]}
    if model.training_data is not None:
        out["property"] = [
            {
                "type": {"coding": [TRAINING_DATA_CODING], "text": "Training data"},
                "valueCode": [{"text": model.training_data}],
            }
        ]
    return out


def _check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(
            f"Resource type '{resource_type[:64]}' is not served; "
            f"supported types are {', '.join(SUPPORTED_TYPES)}."
        )


async def _glass_rows(
    ctx: Context, actor: Actor, resource_type: str, disclosed: Sequence[tuple[str, str]]
) -> list[Disclosed]:
    """The disclosed rows of the patients the caller holds a break-the-glass grant on, each with its
    owning facility, so the search is audited ``break_glass`` where that is the ground it rests on."""
    granted = await under_grant(ctx, actor, [patient for _resource_id, patient in disclosed])
    wanted = [resource_id for resource_id, patient in disclosed if patient in granted]
    if not wanted:
        return []
    owners = await db(ctx.record.fhir.owners, resource_type=resource_type, resource_ids=wanted)
    return [
        Disclosed(patient_id=found[0], owner=found[1], patient_level=found[2])
        for found in (owners.get(resource_id) for resource_id in wanted)
        if found is not None and found[0] is not None
    ]


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
    if await db(ctx.record.fhir.owner, resource_type="Patient", resource_id=patient_id) is None:
        await audit(
            ctx,
            actor,
            action=_ACTION,
            outcome="not_found",
            resource_type="Patient",
            resource_id=patient_id,
        )
        raise NotFound(unseen("Patient with this id"))

    async def read() -> dict[str, Any] | None:
        return await db(
            ctx.record.fhir.everything,
            patient_id=patient_id,
            params=params,
            base_url=base_url,
            scope=scope_for(actor.principal),
            strict=strict,
        )

    bundle = await read()
    if bundle is None:
        # Refused (and audited ``denied``) exactly as a read of the Patient would be, whatever the
        # parameters (a malformed one is no way around the refusal and its entry on the trail).
        await authorise_patient(
            ctx,
            actor,
            action=_ACTION,
            patient_id=patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            hidden=unseen("Patient with this id"),
        )
        bundle = await read()  # a ground (a grant) opened between the two checks
        if bundle is None:
            raise NotFound(unseen("Patient with this id"))
    disclosed: dict[str, list[tuple[str, str]]] = {}  # type -> (resource id, patient id) on this page
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if entry["search"]["mode"] == "include":  # a Device the page references: about no patient
            entry["resource"] = _device_view(resource, ctx)
            continue
        disclosed.setdefault(str(resource["resourceType"]), []).append((str(resource["id"]), patient_id))
    if not disclosed:
        # An empty page still tells the caller about this patient (its total; that nothing matched the
        # filters): on the trail under the patient, ``break_glass`` where the grant is the only ground.
        granted = await under_grant(ctx, actor, [patient_id])
        await audit_disclosed(
            ctx,
            actor,
            action=_ACTION,
            resource_type="Patient",
            patients=[patient_id],
            rows=[Disclosed(patient_id=patient_id, owner=None, patient_level=True)] if granted else [],
        )
    for disclosed_type, rows in disclosed.items():
        await audit_disclosed(
            ctx,
            actor,
            action=_ACTION,
            resource_type=disclosed_type,
            patients=[patient for _resource_id, patient in rows],
            rows=await _glass_rows(ctx, actor, disclosed_type, rows),
        )
    return bundle
