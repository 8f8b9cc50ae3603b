"""Refused bearer authentications on the audit trail (IHE ATNA User Authentication, failure), bounded.

A request the API answers 401 (no bearer token, a malformed, expired or forged one, a key the issuer does
not publish) is one entry: action ``api:authenticate``, outcome ``denied``, the client address, the
request id, the refusal's error code as resource id (resource type ``BearerToken``). The subject, role
and facility are those of the token only when it is genuine and merely expired (its signature verified:
a stolen token replayed after its expiry names whom it was stolen from); otherwise the placeholder
``unknown-user`` (role ``none``, no facility), never what an unverified token claims. The token itself is
never stored.

At most one entry a minute per (client address, error code) in each server process, and at most
:data:`_MAX_REMEMBERED` pairs remembered: a client looping on bad tokens neither grows the append-only
trail without bound nor makes every refusal a database write. Every refusal is still in the access log
and in ``dxassist_requests_total`` (status 401), and counted here by what became of its audit entry.

The 401 is answered whatever happens here: an entry that cannot be written is logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final
from weakref import WeakKeyDictionary

from prometheus_client import Counter

from inference.record.fhir import audit_events
from inference.services._context import Context, db

if TYPE_CHECKING:
    from inference.record import Record
    from inference.security import Unauthenticated

logger = logging.getLogger(__name__)

UNKNOWN_SUBJECT: Final = "unknown-user"
"""The subject of an entry whose token proved nothing (none, forged, malformed): the same placeholder as a
sign-in of the pages with an unknown username."""
UNKNOWN_ROLE: Final = "none"
RESOURCE_TYPE: Final = "BearerToken"
_EVERY_SECONDS: Final = 60.0
_MAX_REMEMBERED: Final = 4096

REFUSED_AUTHENTICATIONS = Counter(
    "dxassist_refused_authentications",
    "Bearer tokens refused by the API (401), by error code and by what became of the audit entry: written, "
    "throttled (one a minute per client address and code) or failed (the record could not be written).",
    ("code", "audit"),
)


class _Throttle:
    """When each (client address, code) was last audited; the least recently audited first."""

    def __init__(self, every: float = _EVERY_SECONDS, capacity: int = _MAX_REMEMBERED) -> None:
        self._every = every
        self._capacity = capacity
        self._last: OrderedDict[tuple[str | None, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, key: tuple[str | None, str], now: float) -> bool:
        """Whether ``key`` gets an entry now (and if so, remember that it did)."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._every:
                return False
            # Oldest first: what has not been audited for a minute is forgotten, from the front.
            while self._last:
                oldest, when = next(iter(self._last.items()))
                if now - when < self._every:
                    break
                del self._last[oldest]
            if len(self._last) >= self._capacity:
                # As many addresses as that within one minute: a flood, already in the log and metrics.
                return False
            self._last[key] = now
            self._last.move_to_end(key)
            return True


_throttles: WeakKeyDictionary[Record, _Throttle] = WeakKeyDictionary()
_throttles_lock = threading.Lock()


def _throttle_of(record: Record) -> _Throttle:
    # One per record, so the apps of one process (tests) keep separate counts.
    with _throttles_lock:
        found = _throttles.get(record)
        if found is None:
            found = _throttles[record] = _Throttle()
        return found


async def audit_refused_authentication(ctx: Context, *, client: str | None, refusal: Unauthenticated) -> None:
    """Write the audit entry of a refused bearer authentication, unless one for the same client address
    and error code was written in the last minute. Never raises: the caller answers 401 either way.

    Args:
        ctx: The process's engines.
        client: The caller's network address, as every entry records it.
        refusal: Why the token was refused (its ``code`` is the entry's resource id); its ``claimed``
            principal, set only for a genuine expired token, is the entry's subject.
    """
    code = refusal.code
    if not _throttle_of(ctx.record).admit((client, code), time.monotonic()):
        REFUSED_AUTHENTICATIONS.labels(code=code, audit="throttled").inc()
        return
    claimed = refusal.claimed
    try:
        await db(
            ctx.record.audit.append,
            subject=claimed.subject if claimed is not None else UNKNOWN_SUBJECT,
            role=claimed.role if claimed is not None else UNKNOWN_ROLE,
            facility=claimed.facility if claimed is not None else None,
            action=audit_events.API_AUTHENTICATION,
            resource_type=RESOURCE_TYPE,
            resource_id=code,
            patient_id=None,
            outcome="denied",
            client=client,
        )
    except Exception:  # whatever failed, the caller is answered 401 (never 500 or 503)
        logger.warning(
            "a refused authentication could not be audited",
            extra={"code": "audit_unavailable", "error": code},
        )
        REFUSED_AUTHENTICATIONS.labels(code=code, audit="failed").inc()
        return
    REFUSED_AUTHENTICATIONS.labels(code=code, audit="written").inc()
