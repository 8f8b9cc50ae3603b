"""``GET /metrics`` of a process that serves no HTTP API (``dxassist listen``), on a port of its own.

The DICOM listener analyses studies, builds their outputs and delivers them: its stage timings, model,
drift, delivery and dead-letter figures live in its own process, which ``/metrics`` of ``dxassist serve``
cannot read. The exporter answers ``GET /metrics`` with :func:`~inference.observability.exposition`
(the same text format) and ``GET /healthz`` with 200 while the process's own check finds nothing wrong,
503 with the reason otherwise (an orchestrator's probe: for the listener, its DICOM acceptor is running
and its analysis loop is not stuck; unlike a TCP probe of the DICOM port, it costs no association and,
with DICOM TLS, no failed handshake in the log). Anything else is 404. It logs nothing per request (a
scraper every few seconds would fill the log) and holds a connection at most ten seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from inference.observability._metrics import exposition

PATH: Final = "/metrics"
HEALTH_PATH: Final = "/healthz"
_TIMEOUT_SECONDS: Final = 10.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "dxassist"
    sys_version = ""
    timeout = _TIMEOUT_SECONDS

    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        path = self.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            problem = self.server.health()
            if problem is None:
                self._answer(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._answer(503, f"{problem}\n".encode(), "text/plain; charset=utf-8")
            return
        if path != PATH:
            self._answer(
                404, b"Not found: the listener serves GET /metrics and /healthz only.\n", "text/plain"
            )
            return
        body, media_type = exposition()
        self._answer(200, body, media_type)

    def _answer(self, status: int, body: bytes, media_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Requests are not logged (see the module)."""


def _healthy() -> str | None:
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: Callable[[], str | None] = staticmethod(_healthy)


class MetricsExporter:
    """An HTTP server of ``GET /metrics`` and ``GET /healthz`` on ``host``:``port``, in a daemon thread
    until :meth:`stop`."""

    def __init__(self, host: str, port: int) -> None:
        """Bind the port (nothing is served before :meth:`start`).

        Raises:
            OSError: The address cannot be bound (the port is in use, the host is not this machine's).
        """
        self._server = _Server((host, port), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self, *, health: Callable[[], str | None] | None = None) -> MetricsExporter:
        """Serve in the background; returns itself.

        Args:
            health: What ``GET /healthz`` asks: None while all is well, else the reason (a sentence
                without patient data) it answers 503 with. Without it, 200 while the process serves.
        """
        if health is not None:
            self._server.health = health
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
