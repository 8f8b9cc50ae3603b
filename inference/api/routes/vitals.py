"""Vital signs → triage result."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from inference.api._public import public_result
from inference.api.deps import AcceptLanguage, ContextDep, json_body, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import TriageResult, VitalsRequest
from inference.record import PatientIn
from inference.services import Actor, analyse_vitals

router = APIRouter(prefix="/v1", tags=["triage"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VitalsRequest"}}},
    }
}


@router.post(
    "/vitals",
    response_model=TriageResult,
    status_code=201,
    responses=errors(
        400,
        *AUTH,
        409,
        413,
        415,
        422,
        503,
        extra={
            200: {
                "model": TriageResult,
                "description": "Already answered: the same Idempotency-Key, or the same reading (same "
                "facility, patient, observed_at and values; without observed_at, the same values received "
                "within 5 minutes).",
            }
        },
    ),
    openapi_extra=_BODY,
    summary="Score vital signs: NEWS2, model risk, contributions, trend, priority (idempotent).",
)
async def submit_vitals(
    actor: Annotated[Actor, require("vitals:submit")],
    ctx: ContextDep,
    body: Annotated[VitalsRequest, json_body(VitalsRequest)],
    response: Response,
    accept_language: AcceptLanguage = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[!-~]+$",
            description=(
                "1-255 visible ASCII characters. The same key from the same sender returns the result filed "
                "first (200); reused for other content: 409 idempotency_key_reused."
            ),
        ),
    ] = None,
) -> Any:
    patient = body.patient
    outcome = await analyse_vitals(
        ctx=ctx,
        actor=actor,
        patient=PatientIn(
            identifier=patient.identifier,
            issuer=patient.issuer,
            name=patient.name,
            birth_date=patient.birth_date.isoformat() if patient.birth_date else None,
            sex=patient.sex,
            facility=patient.facility,
        ),
        vitals=body.vitals(),
        observed_at=body.observed_at,
        accept_language=accept_language,
        idempotency_key=idempotency_key,
    )
    # A request already answered (same Idempotency-Key, or the exact same observation) is not a new
    # resource: 200 with the result filed first.
    response.status_code = 201 if outcome.created else 200
    response.headers["Location"] = f"/v1/results/{outcome.result.result_id}"
    return public_result(outcome.result, language=outcome.language)
