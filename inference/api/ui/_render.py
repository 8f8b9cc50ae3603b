"""Jinja2 environments per language and the page responses (security headers included)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from inference import __version__
from inference.api.ui._i18n import LANG_COOKIE, LANGUAGES, RTL, Formats, choose, translations

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
# Only this process's own scripts, styles and images; no frame may embed the pages; forms post here only.
PAGE_CSP: Final = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
# Query parameters a language link keeps (the worklist's filters): switching the language shows the same list.
KEPT_BY_LANGUAGE_LINKS: Final = ("priority", "status")
PAGE_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages carry patient data: never kept by the browser or a proxy.
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


@functools.cache
def environment(language: str) -> Environment:
    """The template environment of one language (gettext installed, autoescape on)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def page_language(request: Request) -> str:
    """The language of this request's page (see :func:`inference.api.ui._i18n.choose`)."""
    return choose(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def render(
    request: Request, template: str, *, status: int = 200, language: str | None = None, **values: Any
) -> HTMLResponse:
    """Render ``template`` in the reader's language, with the pages' security headers.

    A ``?lang=`` choice is remembered in a cookie (a preference, not a secret).
    """
    language = language or page_language(request)
    page = environment(language).get_template(template)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k in KEPT_BY_LANGUAGE_LINKS]
    html = page.render(
        lang=language,
        dir="rtl" if language in RTL else "ltr",
        languages=LANGUAGES,
        language_links={code: "?" + urlencode([*kept, ("lang", code)]) for code in LANGUAGES},
        fmt=Formats(language),
        version=__version__,
        path=request.url.path,
        **values,
    )
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        secure = request.app.state.parent.state.settings.environment != "development"
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=365 * 24 * 3600,
            samesite="strict",
            path="/",
            httponly=True,
            secure=secure,
        )
    return response
