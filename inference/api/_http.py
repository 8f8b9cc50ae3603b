"""The HTTP/1.1 protocol ``dxassist serve`` runs: uvicorn's httptools (llhttp) protocol, request head bounded.

uvicorn's default parser, h11, is pure Python: an 8 MB radiograph upload spent about 9 ms of the server's
CPU in it, half of the time its body takes to cross the loopback (``benchmarks/README.md``). llhttp
parses in C, but uvicorn's protocol around it puts no bound on the request head: a client could send an
endless header line and the parser would keep it all. (h11 only refuses a head still incomplete past
16 KiB, so a 64 KiB head that arrives within one read passed it.) Here the bytes of a request head are
counted, as fields and as reads; past :data:`MAX_HEAD_BYTES` the request is answered 431 and the
connection closed, so memory holds at most the bound plus one read (:data:`READ_BYTES`).

Each connection reads up to :data:`READ_BYTES` at a time instead of asyncio's 256 KiB: the protocol stops
reading once 64 KiB of body wait for the app and reads again when the app takes them, so a body arrives
in one round trip through the event loop per read, and an 8 MB upload took 32 of them (about 1.5-2 ms
of its latency went; ``benchmarks/README.md``).

Every connection also gets ``TCP_NODELAY``. asyncio sets it only on sockets whose protocol number says
TCP, and the listening socket uvicorn's supervisor hands to its workers (``dxassist serve --workers``)
says 0: answers then waited for the client's delayed acknowledgement, 40 ms each on Linux (a
``/healthz`` took 44 ms with two workers, 2 ms with one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES: Final = 32 * 1024
"""Most bytes of a request line and its header fields (nginx's default buffers hold 32 KiB too)."""
READ_BYTES: Final = 1024 * 1024
"""Most bytes one read of a connection takes from its socket."""

logger = logging.getLogger(__name__)

# The API's error shape (CONTRACT: errors are JSON ``{"error": {"code", "message"}}``), made here because
# the request never reaches the app.
_REFUSAL: Final = json.dumps(
    {
        "error": {
            "code": "headers_too_large",
            "message": "The request line and header fields are larger than the server accepts "
            f"({MAX_HEAD_BYTES // 1024} KiB); send shorter headers.",
        }
    }
).encode("ascii")


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once (no Nagle wait for the acknowledgement of the previous one)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # the peer went away already: nothing will be written
        pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that answers 431 once a request head passes :data:`MAX_HEAD_BYTES`.

    Two counts, because llhttp reports a header field only once it is whole: the bytes of the request
    line and fields the parser has handed over (exact, whenever a head completes), and the bytes of every
    read that ended inside a head (a head that never ends, or a header line without end, is cut there).
    """

    _fields = 0  # bytes of the target and header fields of the current head
    _pending = 0  # bytes of the reads that ended inside the current head
    _in_head = True
    _refused = False
    _ends = 0  # heads and messages ended: a read in which one ended is not all head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._fields, self._pending, self._in_head, self._refused, self._ends = 0, 0, True, False, 0
        _no_delay(transport)
        if hasattr(transport, "max_size"):  # asyncio's selector transports read max_size bytes at a time
            transport.max_size = READ_BYTES
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        self._fields, self._in_head = 0, True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._pending, self._ends = False, 0, self._ends + 1
        if not self._refused:  # a refused request never reaches the app
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._pending, self._ends = True, 0, self._ends + 1
        if not self._refused:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        ends = self._ends
        super().data_received(data)
        if self._in_head and self._ends == ends and not self._refused:
            self._pending += len(data)
            self._refused = self._pending > MAX_HEAD_BYTES
        if self._refused and not self.transport.is_closing():
            self._refuse_head()

    def _count(self, size: int) -> None:
        self._fields += size
        if self._fields > MAX_HEAD_BYTES:
            self._refused = True

    def _refuse_head(self) -> None:
        logger.warning(
            "a request head over the limit was refused",
            extra={"event": "request_head_too_large", "limit_bytes": MAX_HEAD_BYTES},
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(_REFUSAL)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + _REFUSAL
        )
        self.transport.close()
