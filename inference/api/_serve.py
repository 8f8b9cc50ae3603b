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

    With ``ssl_certfile`` and ``ssl_keyfile`` (or ``DXASSIST_TLS_CERTFILE`` and ``DXASSIST_TLS_KEYFILE``)
    the server speaks HTTPS only.

    uvicorn's access log is switched off: it prints the raw URL, query string included, and a query
    such as ``/fhir/Patient?identifier=...`` carries a patient identifier. The app logs one JSON line
    per request with the route template instead.
    """
    import uvicorn

    from inference.api._app import create_app
    from inference.api._http import BoundedHttpToolsProtocol

    settings = settings if settings is not None else get_settings()
    # Flags win over DXASSIST_TLS_CERTFILE / DXASSIST_TLS_KEYFILE; both or neither must be given.
    certfile = ssl_certfile or (str(settings.server.tls_certfile) if settings.server.tls_certfile else None)
    keyfile = ssl_keyfile or (str(settings.server.tls_keyfile) if settings.server.tls_keyfile else None)
    if (certfile is None) != (keyfile is None):
        raise ValueError(
            "TLS needs both a certificate file and a key file (--ssl-certfile and --ssl-keyfile)."
        )
    app = create_app(settings)
    uvicorn.run(
        app,
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
