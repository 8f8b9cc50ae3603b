"""Per-client rate limits: a token bucket per bearer token (the principal) and per client address.

A caller with a token draws from that token's bucket; a caller without one from its address's bucket.
Every request also draws from its address's bucket with ten times the capacity, so a client cycling
through forged tokens is still held back. An empty bucket answers 429 with ``Retry-After``.

The buckets live in this process (each replica limits on its own) and their number is bounded: the least
recently used are forgotten first, which only ever gives a forgotten client a full bucket again. The
workers of one ``dxassist serve --workers N`` share theirs (:class:`SharedTokenBuckets`, a table in a
file they all map), so N workers allow a client what one would.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import mmap
import os
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Final, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from inference.api._errors import error_body
from inference.observability import count_rejected

EXEMPT: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_MAX_BUCKETS: Final = 50_000
_ADDRESS_FACTOR: Final = 10


def _refill(tokens: float, last: float, now: float, rate: float, burst: float) -> tuple[float, float]:
    """One take from a bucket that held ``tokens`` at ``last``: ``(tokens left, seconds to wait)``."""
    tokens = min(burst, tokens + max(0.0, now - last) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


class Buckets(Protocol):
    """Token buckets keyed by any string."""

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 when granted, else the seconds until one is available."""
        ...


class TokenBuckets:
    """Token buckets refilled at ``rate`` per second up to ``burst``, keyed by any string.

    Args:
        rate: Tokens added per second.
        burst: Bucket capacity (the most requests accepted at once after a quiet period).
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 when granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens, wait = _refill(tokens, last, now, self.rate, self.burst)
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return wait


_SLOT: Final = struct.Struct("<16sdd")  # digest of the key, tokens, when they were counted (monotonic s)
_SHARED_SLOTS: Final = 1 << 16  # 1.5 MiB per table
_PROBES: Final = 8
_EMPTY: Final = bytes(16)


class SharedTokenBuckets:
    """Token buckets in a file mapped by every worker of one server, so they all draw from one bucket.

    A fixed table of ``slots`` buckets (open addressing, ``_PROBES`` places per key; a key that finds
    them all taken replaces the one counted longest ago, which gives that client a full bucket, as
    :class:`TokenBuckets` forgetting it would). Keys are stored as 16-byte BLAKE2b digests. A take holds
    an ``flock`` on the file (and a thread lock: ``flock`` does not exclude threads of one process).
    ``time.monotonic`` is the system's monotonic clock, the same in every process.

    Args:
        path: The table's file (created, or sized, on first use; zero bytes are empty buckets).
        rate: Tokens added per second.
        burst: Bucket capacity.
        slots: Buckets in the table.
    """

    def __init__(self, path: Path, rate: float, burst: float, *, slots: int = _SHARED_SLOTS) -> None:
        self.rate = rate
        self.burst = burst
        self.slots = slots
        size = slots * _SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 when granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        first = int.from_bytes(digest[:8], "little") % self.slots
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                place, tokens, last = self._find(first, digest, now)
                tokens, wait = _refill(tokens, last, now, self.rate, self.burst)
                _SLOT.pack_into(self._map, place * _SLOT.size, digest, tokens, now)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return wait

    def _find(self, first: int, digest: bytes, now: float) -> tuple[int, float, float]:
        """The key's slot and its bucket, or the slot it takes over with a full bucket."""
        free: int | None = None
        oldest, oldest_at = first, math.inf
        for probe in range(_PROBES):
            place = (first + probe) % self.slots
            stored, tokens, last = _SLOT.unpack_from(self._map, place * _SLOT.size)
            if stored == digest:
                return place, tokens, last
            if stored == _EMPTY:
                free = place if free is None else free
            elif last < oldest_at:
                oldest, oldest_at = place, last
        return (free if free is not None else oldest), self.burst, now

    def close(self) -> None:
        """Unmap the table and close its file."""
        self._map.close()
        os.close(self._fd)


class RateLimitMiddleware:
    """Answer 429 ``rate_limited`` (with ``Retry-After``) to a client over its rate; pass the rest through.

    Args:
        app: The wrapped ASGI app.
        per_minute: Sustained requests per minute per principal (0 switches the limit off).
        burst: Requests accepted at once after a quiet period.
        shared: A folder shared by the workers of one server: the buckets live in files there, so every
            worker draws from the same ones. None: buckets of this process.
    """

    def __init__(self, app: ASGIApp, *, per_minute: int, burst: int, shared: Path | None = None) -> None:
        self.app = app
        self.enabled = per_minute > 0
        rate = per_minute / 60.0
        self.principals: Buckets
        self.addresses: Buckets
        if shared is not None and self.enabled:
            self.principals = SharedTokenBuckets(shared / "rate-principals.bin", rate, burst)
            self.addresses = SharedTokenBuckets(
                shared / "rate-addresses.bin", rate * _ADDRESS_FACTOR, burst * _ADDRESS_FACTOR
            )
        else:
            self.principals = TokenBuckets(rate, burst)
            self.addresses = TokenBuckets(rate * _ADDRESS_FACTOR, burst * _ADDRESS_FACTOR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope.get("path") in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = f"ip:{client[0] if client else 'unknown'}"
        authorization = next((v for k, v in scope.get("headers", []) if k.lower() == b"authorization"), None)
        wait = self.addresses.take(address)
        if authorization is not None:
            # Keyed by a digest of the token, so the bucket map never holds a usable credential.
            principal = "tok:" + hashlib.sha256(authorization).hexdigest()[:32]
            wait = max(wait, self.principals.take(principal))
        else:
            wait = max(wait, self.principals.take(address))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        count_rejected("rate_limited")
        scope.setdefault("state", {})["error_code"] = "rate_limited"  # for the access log line
        retry_after = str(max(1, math.ceil(wait)))
        # Under /fhir an OperationOutcome, elsewhere the contract's error shape.
        content, media_type = error_body(
            str(scope.get("path", "")),
            429,
            "rate_limited",
            f"Too many requests from this client; retry in {retry_after} second(s).",
        )
        body = json.dumps(content).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", media_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", retry_after.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
