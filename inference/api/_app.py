"""The app factory: routes, error handlers, middleware, and the lifespan that builds the engines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import Depends, FastAPI
from fastapi.telemetry import TelemetryConfig

from inference import __version__
from inference.api._errors import install_error_handlers
from inference.api._middleware import RequestContextMiddleware
from inference.api._openapi import openapi_builder
from inference.api._ratelimit import RateLimitMiddleware
from inference.api._workers import shared_dir
from inference.api.deps import declared_query_only, printable_parameters
from inference.api.routes import all_routers
from inference.api.ui import mount_ui
from inference.config import Settings, get_settings
from inference.runtime import Fetch

logger = logging.getLogger(__name__)

UPLOAD_ROUTES = frozenset({"/v1/studies", "/dicomweb/studies"})
LOG_FILE = "server.jsonl"


def _body_limit(settings: Settings) -> Any:
    def limit(method: str, path: str) -> int:
        if method == "POST" and (path.rstrip("/") in UPLOAD_ROUTES or path.startswith("/dicomweb/studies/")):
            return settings.limits.max_request_bytes  # uploads, STOW-RS and STOW-RS into one study
        return settings.limits.max_json_bytes

    return limit


_NO_TELEMETRY: Final[TelemetryConfig] = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def _check_own_token(settings: Settings) -> None:
    """Create the server's signing key if there is none, and verify a short-lived token signed with it
    (for no one: nothing is granted or written)."""
    from inference.security import issue_token, verify_token

    verify_token(settings, issue_token(settings, subject="dxassist-start", role="pacs", ttl=60))


def create_app(settings: Settings | None = None, *, fetch: Fetch | None = None) -> FastAPI:
    """Build the HTTP API. Nothing heavy happens here; the lifespan builds the engines.

    Args:
        settings: Process settings (read from the environment when None).
        fetch: ``fetch(name, alias)`` for the model host; :func:`registry_fetch` when None.

    Returns:
        The FastAPI app. Run it with ``uvicorn`` (see :func:`inference.api.serve`) or ``TestClient``.
    """
    settings = settings if settings is not None else get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from inference.observability import configure_logging
        from inference.services import open_context

        configure_logging(
            level=settings.logs.log_level,
            log_file=settings.log_path(LOG_FILE),
            max_bytes=settings.logs.log_max_bytes,
            backups=settings.logs.log_backups,
        )
        # The same engines as ``dxassist listen``: record, models, pool, policy and the outbox worker
        # that delivers results of uploads and STOW-RS to the configured destinations.
        async with open_context(settings, fetch=fetch) as ctx:
            if not settings.security.jwks_url:
                # Create the key now, not during a request, and check one token of it: the first check
                # loads the signature code (about 40 ms the first request would otherwise wait).
                await asyncio.to_thread(_check_own_token, settings)
            app.state.ctx = ctx
            logger.info(
                "dxassist API started",
                extra={"event": "startup", "outcome": "ready" if ctx.host.ready else "not_ready"},
            )
            yield
        logger.info("dxassist API stopped", extra={"event": "shutdown"})

    app = FastAPI(
        title="dxassist",
        version=__version__,
        description="AI diagnostic assist for chest radiographs and vital signs. Not a medical device.",
        lifespan=lifespan,
        # Served by inference.api.ui from vendored assets: a hospital network has no CDN.
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry (spans, metrics, logs with exception messages; OTLP export when
        # FASTAPI_OTEL_AUTO_CONFIGURE=true is in the environment): off. Nothing leaves the process but the
        # answers, /metrics and the logs the product writes itself, whatever the host's environment says.
        telemetry=_NO_TELEMETRY,
    )
    app.state.settings = settings
    for router in all_routers():
        # FHIR ignores unknown search parameters (R4 lenient handling); the rest of the API refuses them.
        # Every route refuses control and invisible formatting characters in its parameters.
        lenient = (router.prefix or "").startswith("/fhir")
        checks = [Depends(printable_parameters)] + ([] if lenient else [Depends(declared_query_only)])
        app.include_router(router, dependencies=checks)
    mount_ui(app)
    install_error_handlers(app)
    # Added first, so it runs inside the request context: 429 answers are logged and counted too.
    app.add_middleware(
        RateLimitMiddleware,
        per_minute=settings.server.rate_limit_per_minute,
        burst=settings.server.rate_limit_burst,
        shared=shared_dir(),  # the workers of one `dxassist serve --workers N` share their buckets
    )
    app.add_middleware(RequestContextMiddleware, body_limit=_body_limit(settings))
    app.openapi = openapi_builder(app)  # type: ignore[method-assign]
    return app
