"""The served models."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from inference.api.deps import ContextDep, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import DriftReportOut, Models
from inference.services import Actor, drift_report, list_models

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=Models, responses=errors(*AUTH), summary="Models in service.")
async def get_models(_actor: Annotated[Actor, require("models:read")], ctx: ContextDep) -> Any:
    return list_models(ctx=ctx)


@router.get(
    "/models/drift",
    response_model=DriftReportOut,
    responses=errors(*AUTH),
    summary="Drift of the served imaging model version against its validation reference.",
)
async def get_drift(_actor: Annotated[Actor, require("models:read")], ctx: ContextDep) -> Any:
    return await drift_report(ctx=ctx)
