"""Running the API under uvicorn with logging that cannot leak patient data."""

from __future__ import annotations

from inference.config import Settings, get_settings


def serve(
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve the API until interrupted.

    uvicorn's access log is switched off: it prints the raw URL, query string included, and a query
    such as ``/fhir/Patient?identifier=...`` carries a patient identifier. The app logs one JSON line
    per request with the route template instead.
    """
    import uvicorn

    from inference.api._app import create_app

    app = create_app(settings if settings is not None else get_settings())
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        access_log=False,
        log_config=None,
        server_header=False,
    )
