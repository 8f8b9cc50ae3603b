"""Break the glass: an explicit, reasoned, time-limited access to a patient's results of other
facilities, audited as such and listed for auditors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from inference.api.deps import ContextDep, json_body, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import BreakGlassList, BreakGlassRequest, BreakGlassView
from inference.record import PatientIn
from inference.services import Actor, list_break_glass, open_break_glass

router = APIRouter(prefix="/v1", tags=["break-the-glass"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BreakGlassRequest"}}},
    }
}


@router.post(
    "/break-glass",
    response_model=BreakGlassView,
    status_code=201,
    responses=errors(400, *AUTH, 404, 415, 422),
    openapi_extra=_BODY,
    summary="Open a break-the-glass access to one patient's results (reason required, time-limited).",
)
async def open_access(
    actor: Annotated[Actor, require("break-glass:open")],
    ctx: ContextDep,
    body: Annotated[BreakGlassRequest, json_body(BreakGlassRequest)],
) -> Any:
    key = body.patient
    return await open_break_glass(
        ctx=ctx,
        actor=actor,
        patient_id=None if body.patient_id is None else str(body.patient_id),
        patient=None if key is None else PatientIn(identifier=key.identifier, issuer=key.issuer),
        reason=body.reason,
        minutes=body.minutes,
    )


@router.get(
    "/break-glass",
    response_model=BreakGlassList,
    responses=errors(400, *AUTH),
    summary="Break-the-glass accesses, newest first, with the reads each made (auditors).",
)
async def list_accesses(
    actor: Annotated[Actor, require("break-glass:read")],
    ctx: ContextDep,
    active: Annotated[bool, Query(description="Only accesses that have not expired.")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Any:
    return await list_break_glass(ctx=ctx, actor=actor, active_only=active, limit=limit, offset=offset)
