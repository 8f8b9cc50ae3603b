"""The outbox worker: delivers queued objects in order, retrying with exponential backoff.

Attempts are bounded: an object the destination refuses for good, or that failed
``delivery_max_attempts`` times, goes to the dead-letter state (``dead``) with its error code, and the
queue moves on; ``dxassist dead-letter retry`` gives it a fresh set of attempts. An object whose patient
objected to sharing or to AI processing after it was queued is withheld, never sent (``Outbox.claim``),
and counted. The worker also builds the outputs (SR, heatmap captures) of every newly filed result
(:mod:`inference.record._builds`: the filing commits a pending build, and the request only wakes the
worker), retrying a failed build with the same backoff, up to ``build_max_attempts``.

One worker runs in every process that files results (the API server and ``dxassist listen``); workers
of several processes share the outbox safely because each object is leased before it is sent. A crash
between sending and marking the object sent resends it later: the PACS receives the same SOP Instance
UID again and keeps one copy, so every object arrives exactly once per destination.

Each build and each delivery attempt runs under its own correlation id (``build-<hex>``,
``delivery-<hex>``, logged as ``request_id``), and its lines name the item (``build:7``,
``delivery:42``, the ids of ``dxassist dead-letter``), so one attempt, and every attempt at one item,
can be followed through the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from inference.delivery._senders import DeliveryFailed
from inference.delivery._senders import send as default_send
from inference.observability import correlated, count_dead_lettered, count_retry, new_correlation_id
from inference.record import _builds, _outbox
from inference.record._types import utcnow

if TYPE_CHECKING:
    from inference.config import DeliverySettings, Destination
    from inference.record import Record

logger = logging.getLogger(__name__)

DELIVERIES = Counter(
    "dxassist_deliveries",
    "Delivery attempts of result objects, by destination and outcome (sent, retry, dead), and objects "
    "never sent because their patient objected to sharing or to AI processing after they were queued "
    "(withheld).",
    ("destination", "state"),
)
OUTBOX_PENDING = Gauge(
    "dxassist_outbox_pending",
    "Result objects waiting in the outbox for delivery.",
    multiprocess_mode="livemostrecent",  # every worker counts the same outbox: the newest count
)

Sender = Callable[["Destination", bytes, str], None]
Rebuild = Callable[["_builds.BuildJob"], Awaitable[None]]
"""``rebuild(job)``: build the outputs of ``job.result_id`` and queue them; raises on failure."""


def error_code(error: BaseException, default: str) -> str:
    """The error code of an exception: its ``code`` attribute when it has a short one, else ``default``."""
    code = getattr(error, "code", None)
    if isinstance(code, str) and 0 < len(code) <= 32 and code.replace("_", "").isalnum():
        return code
    return default


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
        max_attempts: Attempts of one object before it goes to the dead-letter state.
        build_max_attempts: Attempts of one result's output build (the first, at filing, included).
        lease_seconds: How long a claimed object is this worker's alone; a worker that dies mid-send
            holds its destination's queue this long, so keep it short but above one attempt's timeout.
        send: ``send(destination, payload, sop_class_uid)``; the real C-STORE / STOW-RS by default.
        rebuild: Builds a result's outputs (set by the services: ``build_outputs``); without
            it, builds wait.
        build_lease_seconds: How long this worker holds a build it claimed (another worker takes it
            over only after that, if this one died mid-build).
    """

    def __init__(
        self,
        record: Record,
        destinations: Sequence[Destination],
        *,
        backoff_seconds: float = 2.0,
        backoff_cap_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        max_attempts: int = 120,
        build_max_attempts: int = 3,
        lease_seconds: float = 120.0,
        send: Sender = default_send,
        rebuild: Rebuild | None = None,
        build_lease_seconds: float = 60.0,
    ) -> None:
        self._record = record
        self._destinations = {d.name: d for d in destinations}
        self._base = backoff_seconds
        self._cap = backoff_cap_seconds
        self._poll = poll_seconds
        self._send = send
        self.max_attempts = max(1, max_attempts)
        self.build_max_attempts = max(1, build_max_attempts)
        self.lease_seconds = lease_seconds
        self.rebuild = rebuild
        self.build_lease_seconds = build_lease_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, record: Record, pacs: DeliverySettings) -> OutboxWorker:
        """A worker configured by the delivery settings (``settings.delivery``)."""
        return cls(
            record,
            pacs.destinations,
            backoff_seconds=pacs.delivery_backoff_seconds,
            backoff_cap_seconds=pacs.delivery_backoff_cap_seconds,
            poll_seconds=pacs.delivery_poll_seconds,
            max_attempts=pacs.delivery_max_attempts,
            build_max_attempts=pacs.build_max_attempts,
            lease_seconds=pacs.delivery_lease_seconds,
            build_lease_seconds=pacs.build_lease_seconds,
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

        A destination's pass stops at its first failure, so its later objects never overtake it. Objects
        whose patient objected since they were queued are withheld by the claim, not tried, and counted
        as ``dxassist_deliveries_total{state="withheld"}``.
        """
        tried = 0
        for name, destination in self._destinations.items():
            while not self._stopping:
                claim = self._record.outbox.claim(destination=name, now=now, lease_seconds=self.lease_seconds)
                if claim.withheld:
                    # Withheld by the record inside the claim, never attempted: counted here, once committed.
                    DELIVERIES.labels(destination=name, state="withheld").inc(claim.withheld)
                item = claim.item
                if item is None:
                    break
                tried += 1
                if not self._attempt(destination, item):
                    break
        OUTBOX_PENDING.set(self._record.outbox.count_pending())
        return tried

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones."""
        return backoff(attempts, base=self._base, cap=self._cap)

    def _attempt(self, destination: Destination, item: _outbox.OutboxItem) -> bool:
        with correlated(new_correlation_id("delivery")):
            logger.info(
                "delivering",
                extra={
                    "event": "delivery_attempt",
                    "item": f"delivery:{item.id}",
                    "result_id": item.result_id,
                    "destination": destination.name,
                    "kind": item.kind,
                    "attempts": item.attempts + 1,
                },
            )
            return self._attempt_once(destination, item)

    def _attempt_once(self, destination: Destination, item: _outbox.OutboxItem) -> bool:
        try:
            self._send(destination, item.payload, item.sop_class_uid)
        except DeliveryFailed as e:
            self._failed(destination, item, str(e), e.code, retryable=e.retryable)
            return False
        except Exception as e:  # a bug or an unforeseen transport error must not stop the worker
            logger.exception(
                "unexpected error while delivering",
                extra={"destination": destination.name, "item": f"delivery:{item.id}"},
            )
            self._failed(
                destination,
                item,
                f"Unexpected {type(e).__name__} while sending.",
                "delivery_error",
                retryable=True,
            )
            return False
        self._record.outbox.mark_sent(item_id=item.id)
        DELIVERIES.labels(destination=destination.name, state="sent").inc()
        logger.info(
            "delivered",
            extra={
                "event": "delivery_sent",
                "item": f"delivery:{item.id}",
                "destination": destination.name,
                "kind": item.kind,
            },
        )
        return True

    def _failed(
        self, destination: Destination, item: _outbox.OutboxItem, error: str, code: str, *, retryable: bool
    ) -> None:
        attempts = item.attempts + 1
        if retryable and attempts < self.max_attempts:
            delay = self.retry_delay(attempts)
            self._record.outbox.mark_retry(
                item_id=item.id,
                error=error,
                code=code,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
            )
            DELIVERIES.labels(destination=destination.name, state="retry").inc()
            count_retry("delivery", code)
            logger.warning(
                "delivery failed; retrying later",
                extra={
                    "event": "delivery_retry",
                    "item": f"delivery:{item.id}",
                    "destination": destination.name,
                    "attempts": attempts,
                    "retry_in_seconds": delay,
                    "error": error,
                    "code": code,
                },
            )
            return
        if retryable:
            error = f"{error} Gave up after {attempts} attempts."
        self._record.outbox.mark_dead(item_id=item.id, error=error, code=code)
        DELIVERIES.labels(destination=destination.name, state="dead").inc()
        count_dead_lettered("delivery", code)
        logger.error(
            "delivery moved to the dead-letter queue; `dxassist dead-letter retry` sends it again",
            extra={
                "event": "delivery_dead",
                "item": f"delivery:{item.id}",
                "destination": destination.name,
                "attempts": attempts,
                "error": error,
                "code": code,
            },
        )

    async def build_due(self) -> int:
        """Build the outputs of every due build (new results, failed builds due again); return how many."""
        if self.rebuild is None:
            return 0
        tried = 0
        while not self._stopping:
            job = await asyncio.to_thread(
                self._record.builds.claim_next, lease_seconds=self.build_lease_seconds
            )
            if job is None:
                break
            tried += 1
            with correlated(new_correlation_id("build")):
                await self._build(job)
        return tried

    async def _build(self, job: _builds.BuildJob) -> None:
        assert self.rebuild is not None
        item = f"build:{job.id}"
        logger.info(
            "building the outputs of a result",
            extra={
                "event": "build_attempt",
                "item": item,
                "result_id": job.result_id,
                "attempts": job.attempts + 1,
            },
        )
        try:
            await self.rebuild(job)
        except Exception as e:
            await asyncio.to_thread(self._build_failed, job, e)
            return
        # Queuing the outputs marked the build done in its own transaction; this marks the builds that
        # queued nothing (a patient who objected to sharing, outputs queued by an earlier attempt).
        await asyncio.to_thread(self._record.builds.mark_done, job_id=job.id)
        logger.info("outputs built", extra={"event": "build_done", "item": item, "result_id": job.result_id})

    def _build_failed(self, job: _builds.BuildJob, error: Exception) -> None:
        # The error's text may quote a header value (a name, a birth date): keep its type and code only.
        code = error_code(error, "output_build_failed")
        text = f"Building the outputs failed ({type(error).__name__})."
        attempts = job.attempts + 1
        if attempts < self.build_max_attempts:
            delay = self.retry_delay(attempts)
            self._record.builds.mark_retry(
                job_id=job.id,
                code=code,
                error=text,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
            )
            count_retry("build", code)
            logger.warning(
                "building the outputs of a result failed; retrying later",
                extra={
                    "event": "build_retry",
                    "item": f"build:{job.id}",
                    "result_id": job.result_id,
                    "attempts": attempts,
                    "code": code,
                },
                exc_info=True,
            )
            return
        self._record.builds.mark_dead(
            job_id=job.id, code=code, error=f"{text} Gave up after {attempts} attempts."
        )
        count_dead_lettered("build", code)
        logger.error(
            "the outputs of a result moved to the dead-letter queue",
            extra={
                "event": "build_dead",
                "item": f"build:{job.id}",
                "result_id": job.result_id,
                "attempts": attempts,
                "code": code,
            },
            exc_info=(type(error), error, error.__traceback__),
        )

    async def run(self) -> None:
        """Deliver until cancelled: a pass, then a pause of ``poll_seconds`` (or until :meth:`wake`)."""
        while not self._stopping:
            try:
                await self.build_due()
            except Exception:  # the database may be briefly unavailable; the next pass tries again
                logger.exception("The build pass failed; the next pass tries again.")
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
