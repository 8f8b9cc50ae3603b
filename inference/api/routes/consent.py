"""Patient consent: objection to AI processing and to sharing with the national record."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path

from inference.api.deps import ContextDep, json_body, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import ConsentByIdentifierRequest, ConsentRequest, ConsentView
from inference.record import PatientIn
from inference.services import Actor, get_consent, set_consent, set_consent_by_identifier

router = APIRouter(prefix="/v1", tags=["consent"])

PatientId = Annotated[uuid.UUID, Path(description="The FHIR Patient id (a UUID).")]


def _body(model: type[Any]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


@router.get(
    "/patients/{patient_id}/consent",
    response_model=ConsentView,
    responses=errors(400, *AUTH, 404),
    summary="A patient's consent.",
)
async def read_consent(
    actor: Annotated[Actor, require("consent:read")], ctx: ContextDep, patient_id: PatientId
) -> Any:
    return await get_consent(ctx=ctx, actor=actor, patient_id=str(patient_id))


@router.put(
    "/patients/{patient_id}/consent",
    response_model=ConsentView,
    responses=errors(400, *AUTH, 404, 415),
    openapi_extra=_body(ConsentRequest),
    summary="Record a known patient's objection (deny) or its withdrawal (permit).",
)
async def write_consent(
    actor: Annotated[Actor, require("consent:write")],
    ctx: ContextDep,
    patient_id: PatientId,
    body: Annotated[ConsentRequest, json_body(ConsentRequest)],
) -> Any:
    return await set_consent(
        ctx=ctx,
        actor=actor,
        patient_id=str(patient_id),
        ai_processing=body.ai_processing == "permit",
        national_sharing=body.national_sharing == "permit",
        facility_sharing=None if body.facility_sharing is None else body.facility_sharing == "permit",
    )


@router.post(
    "/consents",
    response_model=ConsentView,
    responses=errors(400, *AUTH, 415, 422),
    openapi_extra=_body(ConsentByIdentifierRequest),
    summary="Record the consent of a patient named by identifier (filed now if not yet known).",
)
async def write_consent_by_identifier(
    actor: Annotated[Actor, require("consent:write")],
    ctx: ContextDep,
    body: Annotated[ConsentByIdentifierRequest, json_body(ConsentByIdentifierRequest)],
) -> Any:
    key = body.patient
    return await set_consent_by_identifier(
        ctx=ctx,
        actor=actor,
        patient=PatientIn(identifier=key.identifier, issuer=key.issuer, facility=key.facility),
        ai_processing=body.ai_processing == "permit",
        national_sharing=body.national_sharing == "permit",
        facility_sharing=None if body.facility_sharing is None else body.facility_sharing == "permit",
    )
