"""Per-client rate limits: a token bucket per bearer token (the principal) and per client address.

A caller with a token draws from that token's bucket; a caller without one from its address's bucket.
Every request also draws from its address's bucket with ten times the capacity, so a client cycling
through forged tokens is still held back. An empty bucket answers 429 with ``Retry-After``.

The buckets live in this process (each replica limits on its own) and their number is bounded: the least
recently used are forgotten first, which only ever gives a forgotten client a full bucket again.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from inference.api._errors import error_body
from inference.observability import count_rejected

EXEMPT: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_MAX_BUCKETS: Final = 50_000
_ADDRESS_FACTOR: Final = 10


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
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return wait


class RateLimitMiddleware:
    """Answer 429 ``rate_limited`` (with ``Retry-After``) to a client over its rate; pass the rest through.

    Args:
        app: The wrapped ASGI app.
        per_minute: Sustained requests per minute per principal (0 switches the limit off).
        burst: Requests accepted at once after a quiet period.
    """

    def __init__(self, app: ASGIApp, *, per_minute: int, burst: int) -> None:
        self.app = app
        self.enabled = per_minute > 0
        rate = per_minute / 60.0
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
