"""The revoked bearer tokens a server refuses, read from the record every few seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Final

from inference.record import Record, RecordError, Revoked
from inference.security import Principal
from inference.security._tokens import LEEWAY_SECONDS
from inference.services._context import Context

logger = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 5.0
"""How old the list may be: a revocation takes effect within this long on every server and replica."""
CLOCK_SKEW: Final = timedelta(seconds=LEEWAY_SECONDS)
"""How far a subject's cut-off reaches past the revocation's time: the clock difference between machines
that tokens are accepted with (their ``nbf``). A token issued before the revocation by an issuer whose
clock is that much ahead is refused, and so is a token of the subject issued within that long after it."""


class RevocationList:
    """What ``dxassist token revoke`` wrote, as this process last read it.

    Read at most every :data:`REFRESH_SECONDS`, by one request at a time; a record that cannot be read
    keeps the last list (said once in the log), and a process that never read it refuses nothing it
    does not know of: the requests themselves need the record anyway.
    """

    def __init__(self, record: Record) -> None:
        self._record = record
        self._revoked = Revoked(token_ids=frozenset(), subjects={})
        self._read_at = -REFRESH_SECONDS
        self._lock = asyncio.Lock()
        self._failing = False

    async def _current(self) -> Revoked:
        if time.monotonic() - self._read_at < REFRESH_SECONDS:
            return self._revoked
        async with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                try:
                    self._revoked = await asyncio.to_thread(self._record.tokens.revoked)
                    if self._failing:
                        logger.info(
                            "the revoked tokens can be read again", extra={"event": "revocations_read"}
                        )
                    self._failing = False
                except RecordError:
                    if not self._failing:
                        logger.warning(
                            "the revoked tokens cannot be read; the last list read stays in force",
                            extra={"event": "revocations_unreadable"},
                        )
                    self._failing = True
                self._read_at = time.monotonic()
        return self._revoked

    async def revoked(self, principal: Principal) -> bool:
        """Whether a token's caller was revoked (by the token's id, or its subject's cut-off and
        :data:`CLOCK_SKEW`)."""
        current = await self._current()
        return current.covers(
            token_id=principal.token_id,
            subject=principal.subject,
            issued_at=principal.issued_at,
            skew=CLOCK_SKEW,
        )


async def token_revoked(*, ctx: Context, principal: Principal) -> bool:
    """Whether the bearer token ``principal`` comes from was revoked (``dxassist token revoke``)."""
    return ctx.revocations is not None and await ctx.revocations.revoked(principal)
