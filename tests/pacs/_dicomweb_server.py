"""A small DICOMweb server of the tests' own (QIDO-RS studies and instances, WADO-RS per instance).

It serves real DICOM files honestly by default, and misbehaves per study as some archives do: an
instance query that ignores ``limit`` or ``offset``, answers smaller pages than asked (with the Warning
that more results exist), fails (HTTP 500) or drops the connection, and an
instance retrieval that streams without end (or declares a huge ``Content-Length`` first), compresses its
answer although asked not to (a gzip bomb), or trickles a byte at a time. It counts
the bytes it manages to send for each retrieval, so a test can tell how much a client read before it
stopped. No authentication (Orthanc's tests cover that).
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from _certificates import serve_tls

Listing = Literal["honest", "ignore_limit", "ignore_offset", "capped", "fail", "drop"]
# A "capped" listing answers at most this many per page, with PS3.18's Warning that more results exist.
CAPPED = 3
WARNING = '299 test-pacs: "The number of results exceeded the maximum supported by the server. Additional results can be requested."'  # noqa: E501
Retrieval = Literal["honest", "endless", "declared_huge", "gzip", "trickle"]
BOUNDARY = "dxassist-test-boundary"
_CHUNK = b"\0" * 65536


def send_dicom_json(handler: BaseHTTPRequestHandler, body: object, *, warning: str | None = None) -> None:
    """Answer 200 with ``body`` as ``application/dicom+json`` (and a ``Warning`` header if given)."""
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/dicom+json")
    if warning is not None:
        handler.send_header("Warning", warning)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass
class Instance:
    series: str
    sop: str
    blob: bytes = b""


@dataclass
class Study:
    """One study of the archive, and how the server answers for it."""

    uid: str
    instances: list[Instance]
    listing: Listing = "honest"
    retrieval: Retrieval = "honest"


@dataclass
class Server:
    """What the running server was asked and sent."""

    url: str  # the DICOMweb base URL (``.../dicom-web``)
    asked: list[tuple[str, int, int]] = field(default_factory=list)  # (study UID or "", offset, limit)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes written per retrieved SOPInstanceUID
    ended: set[str] = field(default_factory=set)  # retrievals whose answer is over (sent or cut off)


def _answer(study: Study | None, instance: Instance | None = None) -> dict[str, object]:
    if instance is None:
        assert study is not None
        return {"0020000D": {"vr": "UI", "Value": [study.uid]}}
    return {
        "0020000E": {"vr": "UI", "Value": [instance.series]},
        "00080018": {"vr": "UI", "Value": [instance.sop]},
    }


@contextmanager
def dicomweb_server(studies: list[Study], *, tls: tuple[Path, Path] | None = None) -> Iterator[Server]:
    """Serve ``studies`` on 127.0.0.1 until the block ends (``tls``: ``(certificate, key)``: over HTTPS)."""
    by_uid = {study.uid: study for study in studies}
    state = Server(url="")
    lock = threading.Lock()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            segments = [unquote(s) for s in parts.path.strip("/").split("/")]
            query = parse_qs(parts.query)
            offset = int(query.get("offset", ["0"])[0])
            limit = int(query.get("limit", ["0"])[0]) or 10**9
            if segments == ["dicom-web", "studies"]:
                with lock:
                    state.asked.append(("", offset, limit))
                self._json([_answer(s) for s in studies[offset : offset + limit]])
            elif len(segments) == 4 and segments[3] == "instances":
                self._list(by_uid[segments[2]], offset, limit)
            elif len(segments) == 7:
                study = by_uid[segments[2]]
                instance = next(i for i in study.instances if i.sop == segments[6])
                self._retrieve(study, instance)
            else:
                self.send_error(404)

        def _list(self, study: Study, offset: int, limit: int) -> None:
            with lock:
                state.asked.append((study.uid, offset, limit))
            if study.listing == "fail":
                self.send_error(500)
                return
            if study.listing == "drop":  # the connection closed before any answer
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if study.listing == "ignore_limit":
                listed = study.instances[offset:]
            elif study.listing == "ignore_offset":
                listed = study.instances[:limit]
            elif study.listing == "capped":
                listed = study.instances[offset : offset + min(limit, CAPPED)]
            else:
                listed = study.instances[offset : offset + limit]
            more = study.listing == "capped" and offset + len(listed) < len(study.instances)
            self._json([_answer(study, i) for i in listed], warning=WARNING if more else None)

        def _retrieve(self, study: Study, instance: Instance) -> None:
            head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            tail = f"\r\n--{BOUNDARY}--\r\n".encode()
            self.send_response(200)
            self.send_header(
                "Content-Type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            )
            if study.retrieval == "honest":
                self.send_header("Content-Length", str(len(head) + len(instance.blob) + len(tail)))
            elif study.retrieval == "declared_huge":
                self.send_header("Content-Length", str(2**40))
            elif study.retrieval == "gzip":  # 64 MiB of zeros in about 64 KiB, whatever was asked for
                bomb = gzip.compress(head + b"\0" * (64 << 20) + tail, compresslevel=9)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            sent = 0
            try:
                if study.retrieval == "honest":
                    self.wfile.write(head + instance.blob + tail)
                    sent = len(instance.blob)
                elif study.retrieval == "gzip":
                    self.wfile.write(bomb)
                    sent = len(bomb)
                elif study.retrieval == "trickle":  # a byte every 20 ms, each read well within any timeout
                    self.wfile.write(head)
                    while not stop.is_set():
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                        sent += 1
                        stop.wait(0.02)
                else:
                    self.wfile.write(head)
                    while True:  # without end: only the client going away stops it
                        self.wfile.write(_CHUNK)
                        sent += len(_CHUNK)
                        with lock:
                            state.sent[instance.sop] = sent
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with lock:
                    state.sent[instance.sop] = sent
                    state.ended.add(instance.sop)

        def _json(self, body_data: object, *, warning: str | None = None) -> None:
            send_dicom_json(self, body_data, warning=warning)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        serve_tls(server, *tls)
    scheme = "http" if tls is None else "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/dicom-web"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
