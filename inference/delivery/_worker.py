"""The outbox worker: delivers queued objects in order, retrying with exponential backoff.

One worker runs in every process that files results (the API server and ``dxassist listen``); workers
of several processes share the outbox safely because each object is leased before it is sent. A crash
between sending and marking the object sent resends it later: the PACS receives the same SOP Instance
UID again and keeps one copy, so every object arrives exactly once per destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from inference.delivery._senders import DeliveryFailed
from inference.delivery._senders import send as default_send
from inference.record import _outbox
from inference.record._types import utcnow

if TYPE_CHECKING:
    from inference.delivery._config import Destination, PacsSettings
    from inference.record import Record

logger = logging.getLogger(__name__)

DELIVERIES = Counter(
    "dxassist_deliveries",
    "Delivery attempts of result objects, by destination and outcome (sent, retry, failed).",
    ("destination", "state"),
)
OUTBOX_PENDING = Gauge("dxassist_outbox_pending", "Result objects waiting in the outbox for delivery.")

Sender = Callable[["Destination", bytes, str], None]


def backoff(attempts: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``base * 2**(attempts-1)``, capped."""
    return min(cap, base * 2.0 ** max(attempts - 1, 0))


class OutboxWorker:
    """Delivers the outbox to the configured destinations.

    Args:
        record: The patient record (holds the outbox).
        destinations: Where objects go; rows for a name not configured wait untouched.
        backoff_seconds: First retry delay.
        backoff_cap_seconds: Longest retry delay.
        poll_seconds: Pause between passes when nothing was due.
        send: ``send(destination, payload, sop_class_uid)``; the real C-STORE / STOW-RS by default.
    """

    def __init__(
        self,
        record: Record,
        destinations: Sequence[Destination],
        *,
        backoff_seconds: float = 2.0,
        backoff_cap_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        send: Sender = default_send,
    ) -> None:
        self._record = record
        self._destinations = {d.name: d for d in destinations}
        self._base = backoff_seconds
        self._cap = backoff_cap_seconds
        self._poll = poll_seconds
        self._send = send
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, record: Record, pacs: PacsSettings) -> OutboxWorker:
        """A worker configured by :class:`~inference.delivery.PacsSettings`."""
        return cls(
            record,
            pacs.destinations,
            backoff_seconds=pacs.delivery_backoff_seconds,
            backoff_cap_seconds=pacs.delivery_backoff_cap_seconds,
            poll_seconds=pacs.delivery_poll_seconds,
        )

    @property
    def destinations(self) -> tuple[Destination, ...]:
        """The destinations this worker delivers to (results are queued for each of them)."""
        return tuple(self._destinations.values())

    def wake(self) -> None:
        """Look at the outbox now (called after enqueuing)."""
        self._wake.set()

    def deliver_due(self, *, now: datetime | None = None) -> int:
        """One pass (blocking): send every due object, in order per destination; return how many were tried.

        A destination's pass stops at its first failure, so its later objects never overtake it.
        """
        tried = 0
        for name, destination in self._destinations.items():
            while not self._stopping:
                item = _outbox.claim_next(self._record, destination=name, now=now)
                if item is None:
                    break
                tried += 1
                if not self._attempt(destination, item):
                    break
        OUTBOX_PENDING.set(_outbox.count_pending(self._record))
        return tried

    def _attempt(self, destination: Destination, item: _outbox.OutboxItem) -> bool:
        try:
            self._send(destination, item.payload, item.sop_class_uid)
        except DeliveryFailed as e:
            if e.retryable:
                delay = backoff(item.attempts + 1, base=self._base, cap=self._cap)
                _outbox.mark_retry(
                    self._record,
                    item_id=item.id,
                    error=str(e),
                    next_attempt_at=utcnow() + timedelta(seconds=delay),
                )
                DELIVERIES.labels(destination=destination.name, state="retry").inc()
                logger.warning(
                    "delivery failed; retrying later",
                    extra={
                        "event": "delivery_retry",
                        "destination": destination.name,
                        "attempts": item.attempts + 1,
                        "retry_in_seconds": delay,
                        "error": str(e),
                    },
                )
            else:
                _outbox.mark_failed(self._record, item_id=item.id, error=str(e))
                DELIVERIES.labels(destination=destination.name, state="failed").inc()
                logger.error(
                    "delivery refused by the destination; not retried",
                    extra={"event": "delivery_failed", "destination": destination.name, "error": str(e)},
                )
            return False
        except Exception as e:  # a bug or an unforeseen transport error must not stop the worker
            delay = backoff(item.attempts + 1, base=self._base, cap=self._cap)
            _outbox.mark_retry(
                self._record,
                item_id=item.id,
                error=f"Unexpected {type(e).__name__} while sending.",
                next_attempt_at=utcnow() + timedelta(seconds=delay),
            )
            DELIVERIES.labels(destination=destination.name, state="retry").inc()
            logger.exception("unexpected error while delivering", extra={"destination": destination.name})
            return False
        _outbox.mark_sent(self._record, item_id=item.id)
        DELIVERIES.labels(destination=destination.name, state="sent").inc()
        logger.info(
            "delivered",
            extra={"event": "delivery_sent", "destination": destination.name, "kind": item.kind},
        )
        return True

    async def run(self) -> None:
        """Deliver until cancelled: a pass, then a pause of ``poll_seconds`` (or until :meth:`wake`)."""
        while not self._stopping:
            try:
                await asyncio.to_thread(self.deliver_due)
            except Exception:  # the database may be briefly unavailable; the next pass tries again
                logger.exception("The outbox pass failed; the next pass tries again.")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def start(self) -> None:
        """Start :meth:`run` as a task of the running loop (no-op without destinations)."""
        if self._task is None and self._destinations:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="outbox-worker")

    async def stop(self, *, grace_seconds: float = 10.0) -> None:
        """Let the current attempt finish (up to ``grace_seconds``), then end the task.

        An object cut off mid-send keeps its lease and is sent again once the lease ends; the PACS keeps
        one copy of a SOP instance it receives twice.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_seconds)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
