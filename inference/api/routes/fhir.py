"""FHIR R4 views of the record. Errors here are OperationOutcome resources (``application/fhir+json``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable
from starlette.types import Receive, Scope, Send

from inference.api._errors import FHIR_MEDIA_TYPE
from inference.api._fhir import StrictHandling, negotiate_format, not_modified, validators
from inference.api.deps import BaseUrl, ContextDep, QueryPairs, require
from inference.services import (
    Actor,
    audit_event_read,
    audit_event_search,
    capability,
    fhir_history,
    fhir_read,
    fhir_search,
    fhir_vread,
    patient_everything,
)

# Every FHIR route serves JSON only: XML (``_format``, ``Accept``) answers 406 before anything else.
router = APIRouter(prefix="/fhir", tags=["fhir"], dependencies=[Depends(negotiate_format)])

ResourceType = Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,63}$", description="e.g. Patient")]
ResourceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="A FHIR logical id.")]
_FHIR = {"content": {FHIR_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/FhirResource"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": "OperationOutcome", **_FHIR} for status in (400, 401, 403, 404, 406, 429)
}


class FhirResponse(JSONResponse):
    """JSON with the FHIR media type; to a HEAD request, the headers a GET gets (its Content-Length
    included) and no body (RFC 9110 9.3.2)."""

    media_type = FHIR_MEDIA_TYPE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await super().__call__(scope, receive, send)


def _get(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A GET route answering FHIR JSON, with its errors as OperationOutcome resources, and the same route
    for HEAD (FHIR R4 http: a client may ask whether a resource is there, or how large, without it).
    HEAD is a read like GET (authorised and audited the same), left out of the OpenAPI document."""
    get = router.get(path, response_class=FhirResponse, responses={200: _FHIR, **_ERRORS}, summary=summary)
    head = router.head(path, response_class=FhirResponse, include_in_schema=False)

    def register(endpoint: DecoratedCallable) -> DecoratedCallable:
        head(endpoint)
        return get(endpoint)

    return register


@_get("/metadata", "The CapabilityStatement.")
async def metadata(
    _actor: Annotated[Actor, require("fhir:read")], ctx: ContextDep, base_url: BaseUrl
) -> FhirResponse:
    return FhirResponse(await capability(ctx=ctx, base_url=f"{base_url}/fhir"))


@_get("/AuditEvent/{event_id}", "One audit trail entry as a FHIR AuditEvent (auditors).")
async def read_audit_event(
    actor: Annotated[Actor, require("audit:read")], ctx: ContextDep, event_id: ResourceId
) -> FhirResponse:
    return FhirResponse(await audit_event_read(ctx=ctx, actor=actor, event_id=event_id))


@_get(
    "/AuditEvent",
    "Search the audit trail: date (repeatable, with ge/gt/le/lt), patient, agent, _count, _offset.",
)
async def search_audit_events(
    actor: Annotated[Actor, require("audit:read")],
    ctx: ContextDep,
    params: QueryPairs,
    base_url: BaseUrl,
    strict: StrictHandling,
) -> FhirResponse:
    bundle = await audit_event_search(
        ctx=ctx, actor=actor, params=params, base_url=f"{base_url}/fhir", strict=strict
    )
    return FhirResponse(bundle)


@_get(
    "/Patient/{patient_id}/$everything",
    "Patient $everything: the patient's record as a paged searchset Bundle, the Patient first (_type, "
    "_since, start, end, _count, _offset); only what the per-type searches show the caller.",
)
async def everything(
    actor: Annotated[Actor, require("fhir:read")],
    ctx: ContextDep,
    patient_id: ResourceId,
    params: QueryPairs,
    base_url: BaseUrl,
    strict: StrictHandling,
) -> FhirResponse:
    bundle = await patient_everything(
        ctx=ctx,
        actor=actor,
        resource_type="Patient",
        patient_id=patient_id,
        params=params,
        base_url=f"{base_url}/fhir",
        strict=strict,
    )
    return FhirResponse(bundle)


# $everything on another type: a 400 OperationOutcome naming the one type that has it (404 for a type
# not served), not the bare "no such route". Out of the OpenAPI document: it only ever refuses.
@router.get(
    "/{resource_type}/{resource_id}/$everything", response_class=FhirResponse, include_in_schema=False
)
async def everything_elsewhere(
    actor: Annotated[Actor, require("fhir:read")],
    ctx: ContextDep,
    resource_type: ResourceType,
    resource_id: ResourceId,
    params: QueryPairs,
    base_url: BaseUrl,
) -> FhirResponse:
    bundle = await patient_everything(
        ctx=ctx,
        actor=actor,
        resource_type=resource_type,
        patient_id=resource_id,
        params=params,
        base_url=f"{base_url}/fhir",
    )
    return FhirResponse(bundle)


def _versioned(resource: dict[str, Any]) -> FhirResponse:
    """A resource with its version as a weak ``ETag`` (FHIR R4 http: ``W/"<meta.versionId>"``) and its
    ``meta.lastUpdated`` as ``Last-Modified``."""
    return FhirResponse(resource, headers=validators(resource) or None)


@_get("/{resource_type}/{resource_id}/_history/{version_id}", "Read one version of a resource (vread).")
async def vread(
    actor: Annotated[Actor, require("fhir:read")],
    ctx: ContextDep,
    resource_type: ResourceType,
    resource_id: ResourceId,
    version_id: ResourceId,
) -> FhirResponse:
    resource = await fhir_vread(
        ctx=ctx, actor=actor, resource_type=resource_type, resource_id=resource_id, version_id=version_id
    )
    return _versioned(resource)


@_get(
    "/{resource_type}/{resource_id}/_history",
    "The history of a resource: a history Bundle of its current version, the only one kept.",
)
async def instance_history(
    actor: Annotated[Actor, require("fhir:read")],
    ctx: ContextDep,
    resource_type: ResourceType,
    resource_id: ResourceId,
    params: QueryPairs,
    base_url: BaseUrl,
    strict: StrictHandling,
) -> FhirResponse:
    bundle = await fhir_history(
        ctx=ctx,
        actor=actor,
        resource_type=resource_type,
        resource_id=resource_id,
        params=params,
        base_url=f"{base_url}/fhir",
        strict=strict,
    )
    return FhirResponse(bundle)


@_get(
    "/{resource_type}/{resource_id}",
    "Read one resource; conditional read: If-None-Match naming its ETag, or If-Modified-Since at or after "
    "its Last-Modified, answers 304 Not Modified without a body.",
)
async def read(
    actor: Annotated[Actor, require("fhir:read")],
    ctx: ContextDep,
    resource_type: ResourceType,
    resource_id: ResourceId,
    request: Request,
) -> Response:
    # Read (authorised and audited) first: a 304 tells the caller the resource is on file and unchanged,
    # so it is the read's answer to a caller who may read it, and its audited access.
    resource = await fhir_read(ctx=ctx, actor=actor, resource_type=resource_type, resource_id=resource_id)
    if not_modified(request, resource):
        return Response(status_code=304, headers=validators(resource))
    return _versioned(resource)


@_get(
    "/{resource_type}",
    "Search: a searchset Bundle (patient=, identifier=, _id=, _count=, _offset=); other "
    "parameters are ignored unless the request says Prefer: handling=strict.",
)
async def search(
    actor: Annotated[Actor, require("fhir:read")],
    ctx: ContextDep,
    resource_type: ResourceType,
    params: QueryPairs,
    base_url: BaseUrl,
    strict: StrictHandling,
) -> FhirResponse:
    bundle = await fhir_search(
        ctx=ctx,
        actor=actor,
        resource_type=resource_type,
        params=params,
        base_url=f"{base_url}/fhir",
        strict=strict,
    )
    return FhirResponse(bundle)
