"""A STOW-RS receiver for the multi-host test: the PACS host's DICOMweb endpoint, counting what it gets.

``python _stow_receiver.py HOST PORT LOG`` serves ``POST /dicomweb/studies``: every part of the
``multipart/related`` body is read with pydicom, its SOP Instance UID appended to ``LOG`` (one line per
received instance, flushed before the answer) and the request answered 200 with a STOW-RS response. A
PACS keeps one copy per SOP Instance UID; the log keeps every receipt, so the test can tell objects sent
twice from objects stored twice.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import pydicom

_lock = threading.Lock()


def _parts(content_type: str, body: bytes) -> list[bytes]:
    """The payloads of a ``multipart/related`` body (RFC 2046: parts between ``--boundary`` lines)."""
    boundary = next(
        p.split("=", 1)[1].strip('"') for p in content_type.split(";") if p.strip().startswith("boundary=")
    )
    parts = []
    for segment in body.split(b"--" + boundary.encode())[1:]:
        if segment.startswith(b"--"):
            break
        _headers, _, payload = segment.partition(b"\r\n\r\n")
        parts.append(payload.removesuffix(b"\r\n"))
    return parts


class _Handler(BaseHTTPRequestHandler):
    log_path = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (quiet: no access log)
        return

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/dicomweb/studies":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        uids = [
            str(pydicom.dcmread(BytesIO(part), stop_before_pixels=True).SOPInstanceUID)
            for part in _parts(self.headers.get("Content-Type", ""), body)
        ]
        with _lock, open(self.log_path, "a", encoding="ascii") as log:
            for uid in uids:
                log.write(uid + "\n")
            log.flush()
            os.fsync(log.fileno())
        answer = json.dumps(
            {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [u]}} for u in uids]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main() -> None:
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    _Handler.log_path = log
    server = ThreadingHTTPServer((host, port), _Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
