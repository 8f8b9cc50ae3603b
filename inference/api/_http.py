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

A request must also keep coming: a new connection's first byte within :data:`read_timeout` seconds (a
silent one is closed), its head whole within as long of its first byte, and no gap that long in its
body while the app waits for it (a body the app has not taken yet pauses the count). Otherwise it is
answered 408 (when a request began and nothing was answered yet) and the connection closed;
without this a client that sent half a head, or stopped in the middle of an upload, held its connection
(and the upload's buffered part) for ever, and enough of them held every descriptor of the process.

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

READ_TIMED_OUT: Final = "dxassist_read_timed_out"
"""Key set in a request's ``scope["state"]`` when its connection was closed by the read timeout, so that
its access log line says 408 ``request_timeout`` (what the client was answered)."""
DEFAULT_READ_TIMEOUT: Final = 60.0
"""Seconds (``DXASSIST_HTTP_READ_TIMEOUT``; :func:`set_read_timeout`)."""

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


_TIMEOUT: Final = json.dumps(
    {
        "error": {
            "code": "request_timeout",
            "message": "The request did not arrive in time (its head not whole, or its body stopped); "
            "send it again.",
        }
    }
).encode("ascii")


def set_read_timeout(seconds: float) -> None:
    """The read timeout of the connections this process accepts from now on (``serve`` and each worker
    set it from ``settings.server.http_read_timeout``)."""
    BoundedHttpToolsProtocol.read_timeout = seconds


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

    read_timeout: float = DEFAULT_READ_TIMEOUT
    _fields = 0  # bytes of the target and header fields of the current head
    _pending = 0  # bytes of the reads that ended inside the current head
    _in_head = True
    _refused = False
    _ends = 0  # heads and messages ended: a read in which one ended is not all head
    _deadline: asyncio.TimerHandle | None = None  # the current request's head or body must come by then
    _phase = "idle"  # "open" (nothing sent yet), "head" (from its first byte), "body" (the app may wait
    # for it), "idle" (between requests)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._fields, self._pending, self._in_head, self._refused, self._ends = 0, 0, True, False, 0
        self._deadline, self._phase = None, "idle"
        _no_delay(transport)
        if hasattr(transport, "max_size"):  # asyncio's selector transports read max_size bytes at a time
            transport.max_size = READ_BYTES
        super().connection_made(transport)
        # A connection that never sends a byte starts no head: it gets the same time, then is closed.
        self._phase = "open"
        self._arm()

    def on_message_begin(self) -> None:
        self._fields, self._in_head = 0, True
        # The head's deadline runs from its first byte, whatever comes after: a trickled head gains nothing.
        self._phase = "head"
        self._arm()
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
        self._phase = "body"  # a body's deadline runs from its last byte (on_message_complete ends it)
        self._arm()
        if not self._refused:  # a refused request never reaches the app
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            if not self.cycle.response_complete:  # a body nobody waits for any more earns no time
                self._arm()
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._pending, self._ends = True, 0, self._ends + 1
        self._phase = "idle"  # the app answers in its own time; uvicorn's keep-alive timeout follows
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._phase == "idle":
            return
        if self._phase == "open":  # connected and silent since: no request to answer, only to close
            self.transport.close()
            return
        if self._phase == "body" and self.flow.read_paused:
            self._arm()  # the app has not taken what came: the client is not the one late
            return
        logger.warning(
            "a request that stopped arriving was answered 408 and its connection closed",
            extra={"event": "request_timeout", "kind": self._phase},
        )
        cycle = self.cycle
        if self._phase == "body" and cycle is not None:
            cycle.scope.setdefault("state", {})[READ_TIMED_OUT] = True
        if self._phase == "head" or cycle is None or not cycle.response_started:
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(_TIMEOUT)).encode("ascii") + b"\r\n"
                b"connection: close\r\n\r\n" + _TIMEOUT
            )
        self.transport.close()

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
