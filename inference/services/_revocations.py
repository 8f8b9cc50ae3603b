"""The revoked bearer tokens a server refuses, read from the record every few seconds."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import timedelta
from typing import Final

from inference.record import Record, RecordError, Revoked
from inference.security import Principal, TokenCheckUnavailable
from inference.security._tokens import LEEWAY_SECONDS
from inference.services._context import Context

logger = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 5.0
"""How old the list may be: a revocation takes effect within this long on every server and replica."""
CLOCK_SKEW: Final = timedelta(seconds=LEEWAY_SECONDS)
"""How far a subject's cut-off reaches past the revocation's time: the clock difference between machines
that tokens are accepted with (their ``nbf``). A token issued before the revocation by an issuer whose
clock is that much ahead is refused, and so is a token of the subject issued within that long after it."""


class RevocationsUnread(TokenCheckUnavailable):
    """This process has not yet read the revoked tokens from the record, so it cannot tell whether a
    bearer token was revoked: every token is refused (HTTP 503 ``revocations_unavailable``, with
    ``Retry-After``) until the list has been read once."""

    code = "revocations_unavailable"


class RevocationList:
    """What ``dxassist token revoke`` wrote, as this process last read it.

    Read at most every :data:`REFRESH_SECONDS`, by one request at a time. Until it has been read once,
    every bearer token is refused with :class:`RevocationsUnread` (a revoked token must not work because
    the record could not be read when the server started); once read, a record that cannot be read keeps
    the last list. Each change between the two is said once in the log.
    """

    def __init__(self, record: Record) -> None:
        self._record = record
        self._revoked: Revoked | None = None
        self._read_at = -REFRESH_SECONDS
        self._lock = asyncio.Lock()
        self._failing = False

    async def _current(self) -> Revoked:
        if time.monotonic() - self._read_at >= REFRESH_SECONDS:
            async with self._lock:
                if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                    await self._refresh()
                    self._read_at = time.monotonic()
        if self._revoked is None:
            raise RevocationsUnread(
                "This server has not yet been able to read the revoked tokens from the patient record, so "
                "it accepts no bearer token until it has; retry in a few seconds.",
                retry_after_seconds=math.ceil(REFRESH_SECONDS),
            )
        return self._revoked

    async def _refresh(self) -> None:
        try:
            revoked = await asyncio.to_thread(self._record.tokens.revoked)
        except RecordError:
            if not self._failing:
                if self._revoked is None:
                    logger.error(
                        "the revoked tokens cannot be read and never were; bearer tokens are refused "
                        "(503 revocations_unavailable) until they are",
                        extra={"event": "revocations_unread"},
                    )
                else:
                    logger.warning(
                        "the revoked tokens cannot be read; the last list read stays in force",
                        extra={"event": "revocations_unreadable"},
                    )
            self._failing = True
            return
        if self._failing:
            logger.info("the revoked tokens can be read again", extra={"event": "revocations_read"})
        self._revoked = revoked
        self._failing = False

    async def read_once(self) -> bool:
        """Whether the list has been read at least once (reading it now when it is due): until it has,
        the server refuses every bearer token, so it is not ready for traffic (``/readyz``)."""
        try:
            await self._current()
        except RevocationsUnread:
            return False
        return True

    async def revoked(self, principal: Principal) -> bool:
        """Whether a token's caller was revoked (by the token's id, or its subject's cut-off and
        :data:`CLOCK_SKEW`).

        Raises:
            RevocationsUnread: The list has never been read (the record cannot be read): nobody can
                tell, so the token is refused for now.
        """
        current = await self._current()
        return current.covers(
            token_id=principal.token_id,
            subject=principal.subject,
            issued_at=principal.issued_at,
            skew=CLOCK_SKEW,
        )


async def token_revoked(*, ctx: Context, principal: Principal) -> bool:
    """Whether the bearer token ``principal`` comes from was revoked (``dxassist token revoke``).

    Raises:
        RevocationsUnread: This process has not yet read the revoked tokens (HTTP 503).
    """
    return ctx.revocations is not None and await ctx.revocations.revoked(principal)
