"""What one TCP connection may cost the DICOM listener: a bounded number, a bounded wait, a bounded PDU.

pynetdicom reads a PDU by asking for its 6-byte header, then for the length the header states, on a
socket without a timeout, and runs each connection in a thread of its own up to ``maximum_associations``.
Before the calling AE title is even known, one peer could therefore:

- stop in the middle of a PDU (a few bytes of a header, of a TLS handshake) and hold its thread for
  ever: ten such connections and no node could associate any more (A-ASSOCIATE-RJ, local limit);
- trickle a PDU a byte at a time, each byte within any per-read timeout;
- announce a PDU of 4 GiB and stream it, which pynetdicom gathers in memory before it looks at it.

Here every accepted connection is a :class:`_FramedSocket` (or, with DICOM TLS, a
:class:`_FramedSSLSocket`) that follows the PDU framing of what it reads: a PDU must arrive whole within
``dimse_network_timeout`` seconds of its first byte, and one that announces more than :data:`MAX_PDU_BYTES`
is refused before its body is read. pynetdicom sees either as a transport error (its Evt17): the
association ends and its thread with it. :class:`_Slots` admits at most ``dimse_max_associations``
connections at once, ``dimse_max_associations_per_host`` of them from one peer (:func:`peer_share`: an
address, or an IPv6 /64); a connection over either is closed as soon as it is accepted, so a peer holding
its share cannot starve the other nodes.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import Counter as MetricCounter

from inference.errors import InferenceError

if TYPE_CHECKING:
    from inference.config import DimseSettings

logger = logging.getLogger("inference.dimse._listener")

# The largest PDU read: our A-ASSOCIATE-AC tells peers 16 KiB (pynetdicom's maximum_pdu_size) for
# P-DATA; an A-ASSOCIATE-RQ with every presentation context a PACS proposes stays far below this.
MAX_PDU_BYTES: Final = 4 << 20
_HEADER: Final = 6
_LOG_EVERY_SECONDS: Final = 60.0

DROPPED = MetricCounter(
    "dxassist_dimse_connections_dropped",
    "DICOM connections the listener closed for what they cost, by reason: host_limit, limit (too many "
    "at once from one address, in all), stalled (a PDU not whole within the network timeout), "
    "pdu_too_large.",
    ("reason",),
)


class PduTooLarge(InferenceError, ConnectionError):
    """A peer announced a PDU larger than :data:`MAX_PDU_BYTES`; an ``OSError``, which pynetdicom takes
    for the transport closing (its Evt17)."""


class PduStalled(InferenceError, TimeoutError):
    """A PDU did not arrive whole within the network timeout; an ``OSError``, as :class:`PduTooLarge`."""


class _Framing:
    """Where a connection's byte stream is in the PDU framing, and how long the current PDU may take."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._header = bytearray()
        self._body_left = 0
        self._started: float | None = None  # monotonic time of the current PDU's first byte

    @property
    def between_pdus(self) -> bool:
        """Whether the last byte read ended a PDU (or nothing was read yet)."""
        return self._started is None

    def wait(self) -> float:
        """The timeout of the next read: what is left of the current PDU's time, or the whole of it.

        Raises:
            PduStalled: The current PDU's time has run out.
        """
        if self._started is None:
            return self.timeout
        left = self._started + self.timeout - time.monotonic()
        if left <= 0:
            DROPPED.labels(reason="stalled").inc()
            raise PduStalled("the PDU did not arrive whole within the network timeout")
        return left

    def consume(self, data: bytes) -> None:
        """Follow ``data`` through the framing.

        Raises:
            PduTooLarge: A header in ``data`` announces more than :data:`MAX_PDU_BYTES`.
        """
        view = memoryview(data)
        while view:
            if self._started is None:
                self._started = time.monotonic()
            if self._body_left == 0 and len(self._header) < _HEADER:
                taken = view[: _HEADER - len(self._header)]
                self._header += taken
                view = view[len(taken) :]
                if len(self._header) < _HEADER:
                    return
                (length,) = struct.unpack(">L", self._header[2:])
                if length > MAX_PDU_BYTES:
                    DROPPED.labels(reason="pdu_too_large").inc()
                    raise PduTooLarge(f"a PDU of {length} bytes was announced (at most {MAX_PDU_BYTES})")
                self._body_left = length
                if length:
                    continue
            else:
                taken = view[: self._body_left]
                self._body_left -= len(taken)
                view = view[len(taken) :]
            if self._body_left == 0:
                self._header.clear()
                self._started = None


def peer_share(host: str, exact: frozenset[str] = frozenset()) -> str:
    """The share of ``dimse_max_associations_per_host`` a connection from ``host`` counts against.

    An IPv4 address is its own share, and so is an IPv4-mapped IPv6 address (``::ffff:10.0.0.5``, how a
    listener bound to ``::`` sees an IPv4 peer): as its IPv4 address. Any other IPv6 address counts by its
    /64, the smallest block a site is given and the one a single host picks new addresses from at will
    (privacy addresses, SLAAC), so one host cannot take every slot by cycling through its addresses. An
    address in ``exact`` (a registered node's ``host``) keeps a share of its own within its /64.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a link-local address's "%zone" too
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if str(address) in exact:
            return str(address)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _registered_hosts(dimse: DimseSettings) -> frozenset[str]:
    """The registered nodes' ``host`` addresses, in the form :func:`peer_share` compares."""
    found = set()
    for node in dimse.dimse_nodes:
        try:
            address = ipaddress.ip_address((node.host or "").split("%", 1)[0])
        except ValueError:
            continue
        found.add(str(address))
    return frozenset(found)


class _Slots:
    """Connections open at once: in all, and per peer (:func:`peer_share`)."""

    def __init__(self, total: int, per_host: int, exact: frozenset[str] = frozenset()) -> None:
        self.total = total
        self.per_host = per_host
        self._exact = exact
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, host: str) -> str | None:
        """Take a slot for a connection from ``host``: None when granted, else the reason it is not.

        Give it back with :meth:`give_back` and the same ``host``.
        """
        share = peer_share(host, self._exact)
        with self._lock:
            if self._open[share] >= self.per_host:
                return "host_limit"
            if self._open.total() >= self.total:
                return "limit"
            self._open[share] += 1
            return None

    def give_back(self, host: str) -> None:
        share = peer_share(host, self._exact)
        with self._lock:
            self._open[share] -= 1
            if self._open[share] <= 0:
                del self._open[share]


class _Quieted:
    """At most one log line per reason every ``every`` seconds: a peer opening connections in a loop must
    not flood the log (the metric counts each)."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def since_last(self, reason: str) -> int | None:
        """None to stay quiet, else how many were held back since the last line of ``reason``."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._every:
                self._held[reason] += 1
                return None
            self._last[reason] = now
            return self._held.pop(reason, 0)


class _Guarded:
    """What both socket classes add: the framing of what is read, the slot given back on close, and (TLS)
    a report of a handshake that failed."""

    _framing: _Framing | None = None
    _slot: tuple[_Slots, str] | None = None
    _handshake: tuple[str, Callable[[str, str], None]] | None = None  # the peer's address, whom to tell

    if TYPE_CHECKING:
        # Provided by the socket class each subclass also derives from (declared for the type checker only,
        # so that at run time the socket's own method is the one called).
        def settimeout(self, value: float | None, /) -> None: ...

    def guard(self, framing: _Framing) -> None:
        self._framing = framing

    def report_handshake(self, host: str, report: Callable[[str, str], None]) -> None:
        """Have ``report(host, code)`` called if the TLS handshake fails (:func:`handshake_code`)."""
        self._handshake = (host, report)

    def hold(self, slots: _Slots, host: str) -> None:
        self._slot = (slots, host)

    def _framed_recv(self, read: Any, bufsize: int, flags: int) -> bytes:
        framing = self._framing
        if framing is None:
            data: bytes = read(bufsize, flags)
            return data
        self.settimeout(framing.wait())
        try:
            data = read(bufsize, flags)
        except TimeoutError as e:
            if isinstance(e, PduStalled):
                raise
            DROPPED.labels(reason="stalled").inc()
            raise PduStalled("the PDU did not arrive whole within the network timeout") from e
        except ssl.SSLError as e:
            self._handshake_failed(e)
            raise
        self._handshake = None  # past the handshake: an error now is not the peer's authentication
        framing.consume(data)
        if framing.between_pdus:
            # What the listener sends (its responses) may wait as long as a whole PDU may.
            self.settimeout(framing.timeout)
        return data

    def _handshake_failed(self, error: ssl.SSLError) -> None:
        watched, self._handshake = self._handshake, None
        if watched is None:
            return
        host, report = watched
        try:
            report(host, handshake_code(error))
        except Exception:  # the connection fails either way; the report is the listener's concern
            logger.warning("a failed TLS handshake could not be reported", exc_info=True)

    def _release(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot[0].give_back(slot[1])


class _FramedSocket(_Guarded, socket.socket):
    """An accepted plain connection (see the module's docstring)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._framed_recv(super().recv, bufsize, flags)

    def close(self) -> None:
        self._release()
        super().close()


class _FramedSSLSocket(_Guarded, ssl.SSLSocket):
    """An accepted DICOM TLS connection; its handshake is read by the first ``recv``, so it is timed too."""

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        return self._framed_recv(super().recv, buflen, flags)

    def close(self) -> None:
        self._release()
        super().close()


def handshake_code(error: ssl.SSLError) -> str:
    """``tls_certificate_refused`` when the peer's certificate was missing or not trusted, else
    ``tls_handshake_failed`` (a plain client, no common protocol or cipher, a connection cut short)."""
    return "tls_certificate_refused" if "CERTIFICATE" in str(error.reason or "") else "tls_handshake_failed"


def guarded_server_class(
    dimse: DimseSettings, *, on_handshake_failure: Callable[[str, str], None] | None = None
) -> type[Any]:
    """pynetdicom's threaded association server with the bounds of ``dimse`` on every connection.

    Args:
        dimse: The listener's settings (timeout, connection limits).
        on_handshake_failure: Called as ``(peer address, code)`` in the connection's thread when a DICOM
            TLS handshake fails (:func:`handshake_code`).
    """
    from pynetdicom.transport import ThreadedAssociationServer

    slots = _Slots(
        dimse.dimse_max_associations, dimse.dimse_max_associations_per_host, _registered_hosts(dimse)
    )
    quieted = _Quieted(_LOG_EVERY_SECONDS)
    timeout = dimse.dimse_network_timeout

    class _GuardedServer(ThreadedAssociationServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # As AE.start_server does: pynetdicom's shutdown() takes the server out of this list (and
            # raised ValueError, failing the listener's stop, when it was not in it).
            self.ae._servers.append(self)

        def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
            assert self.socket is not None  # bound before it serves
            accepted, address = self.socket.accept()
            connection: Any
            if self.ssl_context is not None:
                connection = self.ssl_context.wrap_socket(accepted, server_side=True)  # a _FramedSSLSocket
                if on_handshake_failure is not None:
                    connection.report_handshake(str(address[0]), on_handshake_failure)
            else:
                connection = _FramedSocket(
                    accepted.family, accepted.type, accepted.proto, fileno=accepted.detach()
                )
            connection.guard(_Framing(timeout))
            return connection, address

        def verify_request(self, request: Any, client_address: Any) -> bool:
            host = str(client_address[0])
            refused = slots.take(host)
            if refused is not None:
                DROPPED.labels(reason=refused).inc()
                quiet = quieted.since_last(refused)
                if quiet is not None:
                    logger.warning(
                        "a DICOM connection was closed on arrival: too many open %s (%d more since the "
                        "last such line; all in dxassist_dimse_connections_dropped_total)",
                        "from its address" if refused == "host_limit" else "in all",
                        quiet,
                        extra={"code": f"dimse_{refused}"},
                    )
                return False
            if isinstance(request, _Guarded):
                request.hold(slots, host)
            return True

    return _GuardedServer


def framed_ssl_socket_class() -> type[ssl.SSLSocket]:
    """The SSL socket class of the listener's TLS context (see :class:`_FramedSSLSocket`)."""
    return _FramedSSLSocket
