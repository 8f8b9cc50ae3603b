"""One result, its display image and heatmaps, and reader feedback on it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from inference.api._public import public_result
from inference.api.deps import AcceptLanguage, ContextDep, json_body, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import FeedbackAccepted, FeedbackRequest, Result
from inference.record import Verdict
from inference.services import (
    Actor,
    get_heat_layer,
    get_heatmap,
    get_result,
    get_result_image,
    submit_feedback,
)

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
    view = await get_result(ctx=ctx, actor=actor, result_id=str(result_id), accept_language=accept_language)
    return public_result(view.result, language=view.language)


_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}
}
_NO_STORE = {"Cache-Control": "private, no-store"}  # patient images never sit in shared or disk caches


@router.get(
    "/{result_id}/image.png",
    response_class=Response,
    responses=errors(400, *AUTH, 404, extra=_PNG),
    summary="The analysed radiograph as displayed (8-bit grayscale PNG, at most 1024 pixels a side).",
)
async def image(
    actor: Annotated[Actor, require("results:read")],
    ctx: ContextDep,
    result_id: ResultId,
) -> Response:
    png = await get_result_image(ctx=ctx, actor=actor, result_id=str(result_id))
    return Response(content=png, media_type="image/png", headers=_NO_STORE)


@router.get(
    "/{result_id}/heatmaps/{finding}.png",
    response_class=Response,
    responses=errors(400, *AUTH, 404, extra=_PNG),
    summary="Heatmap of one finding: the overlay (RGB PNG), or with layer=1 the heat alone (RGBA PNG).",
)
async def heatmap(
    actor: Annotated[Actor, require("results:read")],
    ctx: ContextDep,
    result_id: ResultId,
    finding: FindingCode,
    layer: Annotated[
        bool,
        Query(
            description="1: a transparent RGBA heat layer with exactly the rows and columns of image.png, "
            "to lay over it; 0 (default): the overlay with the radiograph burned in."
        ),
    ] = False,
) -> Response:
    fetch = get_heat_layer if layer else get_heatmap
    png = await fetch(ctx=ctx, actor=actor, result_id=str(result_id), code=finding)
    return Response(content=png, media_type="image/png", headers=_NO_STORE)


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
    receipt = await submit_feedback(ctx=ctx, actor=actor, result_id=str(result_id), verdicts=verdicts)
    return FeedbackAccepted(result_id=receipt.result_id, recorded=receipt.recorded)
