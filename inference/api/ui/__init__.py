"""The radiologist's web pages under ``/ui/``: sign-in, worklist, viewer, feedback (fr, ar, en).

Server-rendered Jinja2 templates with a little vendored JavaScript; every asset is served by the process
(no CDN, no Node.js at run time). The pages are a separate ASGI app mounted in the API: they answer with
HTML pages rather than the API's JSON errors, and authenticate by session cookie rather than bearer token,
but call the same services, with the same permission table, facility scope and audit trail.
"""

from __future__ import annotations

from fastapi import FastAPI

from inference.api.ui._app import create_ui, install_docs

__all__ = ["create_ui", "install_docs", "mount_ui"]


def mount_ui(app: FastAPI) -> None:
    """Mount the pages at ``/ui``, serve ``/docs`` and ``/redoc`` from local assets, and send ``/`` to
    the pages."""
    app.mount("/ui", create_ui(app), name="ui")
    install_docs(app)
