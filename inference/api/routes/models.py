"""The served models."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from inference.api.deps import ContextDep, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import Models
from inference.services import Actor, list_models

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=Models, responses=errors(*AUTH), summary="Models in service.")
async def get_models(_actor: Annotated[Actor, require("models:read")], ctx: ContextDep) -> Any:
    return list_models(ctx=ctx)
