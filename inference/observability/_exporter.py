"""``GET /metrics`` of a process that serves no HTTP API (``dxassist listen``), on a port of its own.

The DICOM listener analyses studies, builds their outputs and delivers them: its stage timings, model,
drift, delivery and dead-letter figures live in its own process, which ``/metrics`` of ``dxassist serve``
cannot read. The exporter answers ``GET /metrics`` with :func:`~inference.observability.exposition`
(the same text format) and 404 to anything else; it logs nothing per request (a scraper every few
seconds would fill the log) and holds a connection at most ten seconds.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from inference.observability._metrics import exposition

PATH: Final = "/metrics"
_TIMEOUT_SECONDS: Final = 10.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "dxassist"
    sys_version = ""
    timeout = _TIMEOUT_SECONDS

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if self.path.split("?", 1)[0] != PATH:
            self._answer(404, b"Not found: the listener serves GET /metrics only.\n", "text/plain")
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


class MetricsExporter:
    """An HTTP server of ``GET /metrics`` on ``host``:``port``, in a daemon thread until :meth:`stop`."""

    def __init__(self, host: str, port: int) -> None:
        """Bind the port (nothing is served before :meth:`start`).

        Raises:
            OSError: The address cannot be bound (the port is in use, the host is not this machine's).
        """
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> MetricsExporter:
        """Serve in the background; returns itself."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
