"""Running the API under uvicorn with logging that cannot leak patient data."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypedDict

from inference.config import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


class _Options(TypedDict):
    """The uvicorn options one server process and the workers' supervisor share."""

    host: str
    port: int
    http: type[asyncio.Protocol]
    ssl_certfile: str | None
    ssl_keyfile: str | None
    log_level: str
    access_log: bool
    log_config: None
    server_header: bool


WORKER_HEALTHCHECK_SECONDS = 60
"""How long uvicorn's supervisor waits for a worker to answer its ping before killing it as hung. Its
default, 5 s, killed workers that were only busy: the answer comes from a thread that needs the
interpreter lock, which a worker analysing studies on a loaded host may hold for seconds in all. A
worker that exits is still replaced at once (the supervisor checks the process first)."""


def serve(
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "info",
    workers: int | None = None,
) -> None:
    """Serve the API until interrupted.

    With ``ssl_certfile`` and ``ssl_keyfile`` (or ``DXASSIST_TLS_CERTFILE`` and ``DXASSIST_TLS_KEYFILE``)
    the server speaks HTTPS only.

    The record's schema and the keys are prepared first (:func:`inference.api._workers.prepare_home`).
    With ``workers`` (or ``DXASSIST_WORKERS``) above 1, uvicorn's supervisor runs that many server
    processes on the port and replaces one that dies (``inference.api._workers``); the workers read their
    settings from the environment, as ``dxassist serve`` does, so ``settings`` must be the environment's.

    uvicorn's access log is switched off: it prints the raw URL, query string included, and a query
    such as ``/fhir/Patient?identifier=...`` carries a patient identifier. The app logs one JSON line
    per request with the route template instead.

    Raises:
        ServerNotStarted: The record cannot be opened or migrated, or the keys cannot be read or made.
    """
    import uvicorn

    from inference.api._app import create_app
    from inference.api._http import BoundedHttpToolsProtocol, set_read_timeout

    settings = settings if settings is not None else get_settings()
    set_read_timeout(settings.server.http_read_timeout)
    # Flags win over DXASSIST_TLS_CERTFILE / DXASSIST_TLS_KEYFILE; both or neither must be given.
    certfile = ssl_certfile or (str(settings.server.tls_certfile) if settings.server.tls_certfile else None)
    keyfile = ssl_keyfile or (str(settings.server.tls_keyfile) if settings.server.tls_keyfile else None)
    if (certfile is None) != (keyfile is None):
        raise ValueError(
            "TLS needs both a certificate file and a key file (--ssl-certfile and --ssl-keyfile)."
        )
    options = _Options(
        host=host,
        port=port,
        http=BoundedHttpToolsProtocol,  # llhttp, the request head bounded (inference.api._http)
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        log_level=log_level,
        access_log=False,
        log_config=None,
        server_header=False,
    )
    from inference.api._workers import prepare_home, shared_state

    # Before uvicorn: a database that does not answer is one line (ServerNotStarted), not the traceback
    # uvicorn prints for a failed start-up. The app's own start then finds the schema at its revision.
    prepare_home(settings)
    count = workers if workers is not None else settings.server.workers
    if count <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "inference.api._serve:worker_app",  # each worker builds its app from the environment
        factory=True,
        workers=count,
        loop="inference.api._workers:ReusePortLoop",  # each worker binds its own SO_REUSEPORT socket
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        **options,
    )
    with shared_state(count):
        # No socket from the supervisor: each worker binds its own (``inference.api._workers``).
        Multiprocess(config, sockets=None).run()  # type: ignore[arg-type]  # uvicorn types a list; None binds


def worker_app() -> FastAPI:
    """The app of one worker of ``dxassist serve --workers N`` (uvicorn's factory, settings from the
    environment the supervisor passed on)."""
    from inference.api._app import create_app
    from inference.api._http import set_read_timeout

    settings = get_settings()
    set_read_timeout(settings.server.http_read_timeout)
    return create_app(settings)
