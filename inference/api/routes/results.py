"""One result, its heatmaps, and reader feedback on it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from inference.api.deps import AcceptLanguage, ContextDep, json_body, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import FeedbackAccepted, FeedbackRequest, Result
from inference.record import Verdict
from inference.services import Actor, get_heatmap, get_result, submit_feedback

router = APIRouter(prefix="/v1/results", tags=["results"])

ResultId = Annotated[uuid.UUID, Path(description="The result id (a UUID).")]
FindingCode = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$", description="A finding code.")]


@router.get("/{result_id}", response_model=Result, responses=errors(400, *AUTH, 404), summary="One result.")
async def read_result(
    actor: Annotated[Actor, require("results:read")],
    ctx: ContextDep,
    result_id: ResultId,
    accept_language: AcceptLanguage = None,
) -> Any:
    return await get_result(ctx=ctx, actor=actor, result_id=str(result_id), accept_language=accept_language)


@router.get(
    "/{result_id}/heatmaps/{finding}.png",
    response_class=Response,
    responses=errors(400, *AUTH, 404, extra={200: {"content": {"image/png": {}}}}),
    summary="Heatmap overlay (PNG) of one finding.",
)
async def heatmap(
    actor: Annotated[Actor, require("results:read")],
    ctx: ContextDep,
    result_id: ResultId,
    finding: FindingCode,
) -> Response:
    png = await get_heatmap(ctx=ctx, actor=actor, result_id=str(result_id), code=finding)
    return Response(content=png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


_FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
    }
}


@router.post(
    "/{result_id}/feedback",
    response_model=FeedbackAccepted,
    status_code=201,
    responses=errors(400, *AUTH, 404, 415, 422),
    openapi_extra=_FEEDBACK_BODY,
    summary="A reader's verdicts on the findings of a result.",
)
async def feedback(
    actor: Annotated[Actor, require("feedback:write")],
    ctx: ContextDep,
    result_id: ResultId,
    body: Annotated[FeedbackRequest, json_body(FeedbackRequest)],
) -> Any:
    verdicts = [Verdict(code=v.code, verdict=v.verdict, correct_label=v.correct_label) for v in body.verdicts]
    return await submit_feedback(ctx=ctx, actor=actor, result_id=str(result_id), verdicts=verdicts)
