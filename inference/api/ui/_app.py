"""The pages' ASGI app (error pages, static files) and the API documentation pages served locally."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.api.ui._auth import SignInNeeded
from inference.api.ui._input import printable_request
from inference.api.ui._pages import router
from inference.api.ui._render import render
from inference.record import InvalidFeedback, NotFound, RecordError
from inference.security import Forbidden, SecurityError
from inference.services import PictureUnreadable

logger = logging.getLogger(__name__)

STATIC: Final = Path(__file__).resolve().parent / "static"
VENDOR: Final = "/ui/static/vendor"
# Swagger UI and Redoc build their pages with inline styles, and Redoc runs a worker from a blob.
DOCS_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; object-src 'none'"
)


def _error_page(request: Request, status: int, kind: str) -> HTMLResponse:
    return render(request, "error.html", status=status, kind=kind)


def create_ui(parent: FastAPI) -> FastAPI:
    """The pages' app; ``parent`` is the API app whose engines (``state.ctx``) and settings it uses."""
    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ui.state.parent = parent
    # Every route refuses control and invisible formatting characters in what it is sent (._input).
    ui.include_router(router, dependencies=[Depends(printable_request)])
    ui.mount("/static", StaticFiles(directory=STATIC), name="static")

    @ui.exception_handler(SecurityError)
    async def _security(request: Request, exc: SecurityError) -> Response:
        if isinstance(exc, SignInNeeded):
            if request.method == "GET":
                return RedirectResponse("/ui/signin", status_code=303)
            return _error_page(request, 401, "signin")
        if isinstance(exc, Forbidden):
            return _error_page(request, 403, "csrf" if exc.code == "csrf_refused" else "forbidden")
        return _error_page(request, 401, "signin")

    @ui.exception_handler(RecordError)
    async def _record(request: Request, exc: RecordError) -> Response:
        if isinstance(exc, NotFound):
            return _error_page(request, 404, "not_found")
        if isinstance(exc, InvalidFeedback):
            return _error_page(request, 400, "bad_request")
        logger.error("the record failed while serving a page", exc_info=exc)
        return _error_page(request, 503, "unavailable")

    @ui.exception_handler(PictureUnreadable)
    async def _rendering(request: Request, exc: PictureUnreadable) -> Response:
        return _error_page(request, 500, "picture")

    @ui.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if any(error.get("type") == "invalid_characters" for error in exc.errors()):
            return _error_page(request, 422, "invalid_characters")
        return _error_page(request, 400, "bad_request")

    @ui.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not_found", 413: "too_large"}.get(exc.status_code, "bad_request")
        page = _error_page(request, exc.status_code, kind)
        if exc.status_code == 413:
            page.headers["connection"] = "close"  # the rest of the body is never read
        return page

    return ui


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the vendored assets, and ``/`` → ``/ui/``.

    The app must have been created with ``docs_url=None, redoc_url=None``.
    """
    headers = {
        "Content-Security-Policy": DOCS_CSP,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="dxassist API",
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/ui/static/favicon.svg",
            # The API has no OAuth2 flow to try out (bearer tokens come from `dxassist token issue`), so
            # Swagger UI's OAuth2 redirect page (/docs/oauth2-redirect, an inline script) is not served.
            oauth2_redirect_url=None,
        )
        return _with_local_init(page, headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title="dxassist API",
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url="/ui/static/favicon.svg",
            with_google_fonts=False,
        )
        return HTMLResponse(page.body, headers=headers)


def _with_local_init(page: HTMLResponse, headers: dict[str, str]) -> HTMLResponse:
    """FastAPI starts Swagger UI with an inline script, which the page's CSP forbids: move it to a file."""
    html = bytes(page.body).decode()
    start = html.rfind("<script>")
    end = html.find("</script>", start)
    if start != -1 and end != -1:
        html = (
            html[:start]
            + '<script src="/ui/static/swagger-init.js"></script>'
            + html[end + len("</script>") :]
        )
    return HTMLResponse(html, headers=headers)
