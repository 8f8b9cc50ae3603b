"""The worklist: open results, most urgent first, then oldest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from inference.api._public import public_worklist
from inference.api.deps import ContextDep, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import Worklist
from inference.services import Actor, get_worklist

router = APIRouter(prefix="/v1", tags=["worklist"])


@router.get("/worklist", response_model=Worklist, responses=errors(400, *AUTH), summary="Open results.")
async def worklist(
    actor: Annotated[Actor, require("worklist:read")],
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Any:
    items = await get_worklist(ctx=ctx, actor=actor, limit=limit, offset=offset)
    return public_worklist(items, limit=limit, offset=offset)
