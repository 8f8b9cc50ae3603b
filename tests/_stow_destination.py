"""A STOW-RS destination on loopback for delivery tests: it keeps every POST and answers 200.

What dxassist sent can be read back as DICOM (:meth:`Received.datasets`), so a test checks the objects a
PACS or a national record would have stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

from _certificates import serve_tls


@dataclass
class Received:
    """What the STOW-RS destination was sent: one ``(path, content type, body)`` per POST."""

    posts: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def datasets(self) -> list[Any]:
        """Every DICOM instance POSTed so far, in the order received."""
        from pydicom import dcmread

        with self.lock:
            posts = list(self.posts)
        out = []
        for _path, content_type, body in posts:
            boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
            for part in body.split(f"--{boundary}".encode())[1:-1]:
                out.append(dcmread(BytesIO(part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n"))))
        return out


@contextmanager
def stow_destination(tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, Received]]:
    """Serve a STOW-RS endpoint on 127.0.0.1 while the block runs: its base URL and what it received.

    ``tls``: ``(certificate, key)`` PEM files: HTTPS with that certificate.
    """
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with received.lock:
                received.posts.append((self.path, self.headers.get("Content-Type", ""), body))
            answer = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        serve_tls(server, *tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        scheme = "http" if tls is None else "https"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}/dicom-web", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
