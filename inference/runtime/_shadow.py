"""Shadow scoring off the request path: a bounded queue of challenger jobs that drops rather than waits.

A request answered by the ``champion`` offers a job (score the same input with the ``challenger``, file
its output) after its own result is filed. The queue holds at most ``capacity`` jobs; a job offered to a
full queue is dropped and counted (``dxassist_shadow_dropped_total``), so shadow scoring can never hold
a clinical answer back. One worker runs the jobs one at a time, and the challenger's session runs on its
own single thread (``executor``), never on the champion's micro-batcher or worker pool.

A job whose challenger refuses the input for a known reason (an image smaller than its input) raises
:class:`ShadowRefused`: counted under its reason (``dxassist_shadow_refused_total``), logged once per
model, version and reason without a stack, not a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Gauge

from inference.runtime._errors import RuntimeErrorBase

logger = logging.getLogger(__name__)

SHADOW_OFFERED = Counter(
    "dxassist_shadow_offered_total", "Shadow-scoring jobs offered to the queue.", ["model"]
)
SHADOW_DROPPED = Counter(
    "dxassist_shadow_dropped_total",
    "Shadow-scoring jobs dropped because the queue was full or the process was stopping.",
    ["model"],
)
SHADOW_FAILED = Counter(
    "dxassist_shadow_failed_total",
    "Shadow-scoring jobs that raised (logged; the champion is unaffected).",
    ["model"],
)
SHADOW_REFUSED = Counter(
    "dxassist_shadow_refused_total",
    "Shadow-scoring jobs whose challenger refused the input for a known reason (reason: image_too_small, "
    "an image smaller than the challenger's input); not failures.",
    ["model", "reason"],
)
SHADOW_DONE = Counter(
    "dxassist_shadow_scored_total",
    "Inputs scored by a challenger and filed as shadow outputs.",
    ["model", "version"],
)
SHADOW_DEPTH = Gauge(
    "dxassist_shadow_queue_depth", "Shadow-scoring jobs waiting.", multiprocess_mode="livesum"
)

Job = Callable[[], Awaitable[None]]


class ShadowRefused(RuntimeErrorBase):
    """A job's challenger refused its input for a known reason; nothing was filed, nothing failed.

    The queue counts it under ``reason`` and logs the message once per model, ``version`` and reason, so
    the message must say what the challenger accepts, never what the input held.

    Attributes:
        reason: The metric label (``image_too_small``).
        version: The challenger version that refused.
    """

    def __init__(self, message: str, *, reason: str, version: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.version = version


class ShadowQueue:
    """A bounded queue of shadow-scoring jobs and the one worker that runs them.

    Args:
        capacity: Jobs that may wait; more are dropped (0 turns shadow scoring off).
        quiet: Seconds the champion must have been idle before a job starts.
        idle_since: ``time.monotonic()`` at which the champion last finished scoring, or ``math.inf``
            while it is scoring (``ModelHost.idle_since``); None: jobs start at once.
    """

    def __init__(
        self, capacity: int, *, quiet: float = 0.0, idle_since: Callable[[], float] | None = None
    ) -> None:
        self.capacity = capacity
        self.quiet = quiet
        self._idle_since = idle_since
        self._queue: asyncio.Queue[tuple[str, Job]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.executor: ThreadPoolExecutor | None = None
        """The single thread challenger sessions run on (None until started)."""
        self._told: set[tuple[str, str, str]] = set()

    @property
    def enabled(self) -> bool:
        """Whether jobs are accepted (started, with a capacity above 0)."""
        return self._queue is not None

    def start(self) -> None:
        """Start the worker (in the running event loop); no-op with capacity 0 or when started."""
        if self._queue is not None or self.capacity <= 0:
            return
        self._queue = asyncio.Queue(maxsize=self.capacity)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dxassist-shadow")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="shadow-scoring")

    def offer(self, model: str, job: Job) -> bool:
        """Queue ``job`` if there is room; return False (and count a drop) when there is none."""
        if self._queue is None:
            return False
        SHADOW_OFFERED.labels(model).inc()
        try:
            self._queue.put_nowait((model, job))
        except asyncio.QueueFull:
            SHADOW_DROPPED.labels(model).inc()
            return False
        SHADOW_DEPTH.set(self._queue.qsize())
        return True

    @property
    def depth(self) -> int:
        """Jobs waiting."""
        return self._queue.qsize() if self._queue is not None else 0

    async def drain(self) -> None:
        """Wait until every queued job has run (tests, orderly shutdown of a batch)."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        """Stop the worker; jobs still waiting are dropped and counted."""
        queue, self._queue = self._queue, None
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        if queue is not None:
            while not queue.empty():
                model, _job = queue.get_nowait()
                SHADOW_DROPPED.labels(model).inc()
            SHADOW_DEPTH.set(0)
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def _wait_for_quiet(self) -> None:
        """Return once the champion has scored nothing for ``quiet`` seconds (clinical work first)."""
        if self._idle_since is None or self.quiet <= 0:
            return
        while True:
            idle = time.monotonic() - self._idle_since()
            if idle >= self.quiet:
                return
            await asyncio.sleep(max(self.quiet - idle, 0.005) if idle >= 0 else self.quiet)

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            model, job = await queue.get()
            SHADOW_DEPTH.set(queue.qsize())
            try:
                await self._wait_for_quiet()
                await job()
            except asyncio.CancelledError:
                queue.task_done()
                raise
            except ShadowRefused as e:
                SHADOW_REFUSED.labels(model, e.reason).inc()
                if (model, e.version, e.reason) not in self._told:
                    self._told.add((model, e.version, e.reason))
                    logger.warning(
                        "%s Counted in dxassist_shadow_refused_total (reason %s), logged once per "
                        "challenger version.",
                        e,
                        e.reason,
                        extra={"code": "shadow_refused", "model": model, "model_version": e.version},
                    )
            except Exception:  # a failing challenger must never reach the champion's requests
                SHADOW_FAILED.labels(model).inc()
                logger.warning(
                    "A shadow-scoring job of %s failed; the champion is unaffected.", model, exc_info=True
                )
            queue.task_done()
