"""Liveness, readiness and Prometheus metrics (no authentication: probes and scrapers have no token)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from inference.api.deps import ContextDep
from inference.api.schemas import Health
from inference.observability import exposition
from inference.services import is_ready, model_problems, readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: 200 while the process is up.")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary=(
        "Readiness: 200 when both models are loaded, the database answers and the revoked tokens have been "
        "read, 503 otherwise; `audit_anchor` is reported (false: the audit head anchor could not be "
        "written), not required."
    ),
)
async def readyz(ctx: ContextDep) -> Response:
    checks = await readiness(ctx=ctx)
    ready = is_ready(checks)
    body = Health(status="ok" if ready else "unavailable", checks=checks, problems=model_problems(ctx=ctx))
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics (text exposition format).",
)
async def metrics() -> Response:
    payload, content_type = exposition()
    return Response(content=payload, media_type=content_type)
