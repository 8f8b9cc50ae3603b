"""Micro-batching: concurrent requests for one model are stacked into one ``session.run``.

A batch runs as soon as its first request arrives unless more images are on their way: a caller
announces an image it is preparing with :meth:`MicroBatcher.expecting` (and submits it inside that
block). While announced images have not been submitted yet, the first request of a batch waits for
them, at most ``max_wait`` seconds from its arrival; a batch closes early when ``max_size`` requests are
waiting. A lone image, with nothing announced, is scored at once. Requests that arrive while a batch runs
are stacked into the next one. Batching is safe across a hot swap: every queued item carries the
:class:`ServedModel` it was submitted for, and a batch only runs items of the same model together, so a
request always finishes on the session it started with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from inference.runtime._errors import InferenceFailed, ModelUnavailable
from inference.runtime._metrics import BATCH_SIZE, INFERENCE_SECONDS, QUEUE_DEPTH
from inference.runtime._served import ServedModel

logger = logging.getLogger(__name__)

R = TypeVar("R")

BatchHook = Callable[[str, int, float], None]
"""``on_batch(model_name, batch_size, seconds)``: called after every ``session.run``."""


@dataclass(eq=False)
class _Item(Generic[R]):
    model: ServedModel
    tensor: np.ndarray
    future: asyncio.Future[R]
    queued_at: float


@dataclass(eq=False)
class _Announcement:
    """Images a caller announced to one batcher and has not submitted yet."""

    batcher: MicroBatcher[Any]
    remaining: int


# The announcement open in this task (a task started inside the block shares it: contexts are copied).
_announced: contextvars.ContextVar[_Announcement | None] = contextvars.ContextVar(
    "dxassist_batch_announced", default=None
)


class MicroBatcher(Generic[R]):
    """Collects single-example requests into batches and runs each batch once in an executor.

    Args:
        run_batch: ``run_batch(model, stacked)`` runs the model on a stacked batch and returns one
            result per row; called in ``executor``.
        max_size: most requests in one batch.
        max_wait: the longest the first request of a batch waits for images announced with
            :meth:`expecting` and not submitted yet (seconds; 0: never waits).
        executor: where ``run_batch`` runs (ONNX Runtime releases the GIL).
        label: the ``model`` label of the metrics.
        on_batch: optional hook called with ``(model_name, size, seconds)`` after every run.
        max_queue: most waiting requests; beyond it :class:`ModelUnavailable` sheds load.
    """

    def __init__(
        self,
        run_batch: Callable[[ServedModel, np.ndarray], Sequence[R]],
        *,
        max_size: int,
        max_wait: float,
        executor: Executor,
        label: str,
        on_batch: BatchHook | None = None,
        max_queue: int = 1024,
    ) -> None:
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_wait = max_wait
        self._executor = executor
        self._label = label
        self._on_batch = on_batch
        self._max_queue = max_queue
        self._pending: collections.deque[_Item[R]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Images announced with ``expecting`` and not submitted (nor given up) yet.
        self._expected = 0
        self.batches_run = 0

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    @property
    def expected(self) -> int:
        """Images announced with :meth:`expecting` that have not been submitted yet."""
        return self._expected

    @contextlib.contextmanager
    def expecting(self, count: int = 1) -> Iterator[None]:
        """Announce ``count`` images that this task is preparing and will :meth:`submit` inside the block.

        While announced images are on their way, the first request of a batch waits for them (at most
        ``max_wait``); without announcements a request is scored at once. A submit inside the block (in
        this task, or a task it starts) counts as an announced image arriving. Leaving the block, however
        it ends (an image that cannot be prepared, a cancelled request), withdraws the images not
        submitted, and the batch waiting for them goes ahead. Call it on the event loop's thread.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}.")
        announcement = _Announcement(self, count)
        self._expected += count
        token = _announced.set(announcement)
        try:
            yield
        finally:
            _announced.reset(token)
            withdrawn, announcement.remaining = announcement.remaining, 0
            if withdrawn:
                self._expected -= withdrawn
                self._wakeup.set()  # a batch waiting for these images goes ahead without them

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._worker(), name=f"batcher-{self._label}")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting fail with :class:`ModelUnavailable`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ModelUnavailable("The model server is shutting down; retry later."))
        QUEUE_DEPTH.labels(self._label).set(0)

    def submit(self, model: ServedModel, tensor: np.ndarray) -> asyncio.Future[R]:
        """Queue one example (without its batch axis); the future resolves to its result.

        Raises:
            ModelUnavailable: the batcher is not running or too many requests are waiting.
        """
        if self._task is None:
            raise ModelUnavailable("The model server is not running; retry later.")
        if len(self._pending) >= self._max_queue:
            raise ModelUnavailable(
                f"{len(self._pending)} requests are already waiting for model {model.name}; retry later."
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(model, tensor, future, asyncio.get_running_loop().time()))
        announcement = _announced.get()
        if announcement is not None and announcement.batcher is self and announcement.remaining > 0:
            announcement.remaining -= 1
            self._expected -= 1
        QUEUE_DEPTH.labels(self._label).set(len(self._pending))
        self._wakeup.set()
        return future

    async def _collect(self) -> list[_Item[R]]:
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        # Wait only for images announced and still being prepared; the wait counts from when the oldest
        # request arrived: requests that queued up while the previous batch ran have waited already.
        deadline = self._pending[0].queued_at + self._max_wait
        while len(self._pending) < self._max_size and self._expected > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        # One model and one shape per batch: items queued for a model that was swapped out meanwhile, or
        # of another shape (they could not be stacked with the first), form their own batch.
        first = self._pending[0]
        batch: list[_Item[R]] = []
        kept: collections.deque[_Item[R]] = collections.deque()
        while self._pending and len(batch) < self._max_size:
            item = self._pending.popleft()
            if item.future.done():  # the caller went away (cancelled); do not spend compute on it
                continue
            alike = item.model is first.model and item.tensor.shape == first.tensor.shape
            (batch if alike else kept).append(item)
        self._pending.extendleft(reversed(kept))
        QUEUE_DEPTH.labels(self._label).set(len(self._pending))
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            model = batch[0].model
            started = time.perf_counter()
            try:
                # Stacking allocates the whole batch: a MemoryError fails this batch, not the worker.
                stacked = np.stack([item.tensor for item in batch])
                results = await loop.run_in_executor(self._executor, self._run_batch, model, stacked)
            except asyncio.CancelledError:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(
                            ModelUnavailable("The model server is shutting down; retry later.")
                        )
                raise
            except Exception as e:  # any ORT failure fails this batch only; the worker keeps serving
                logger.exception(
                    "Model %s version %s failed on a batch of %d.", model.name, model.version, len(batch)
                )
                error = InferenceFailed(f"Model {model.name} version {model.version} failed to run: {e}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            seconds = time.perf_counter() - started
            self.batches_run += 1
            INFERENCE_SECONDS.labels(self._label).observe(seconds)
            BATCH_SIZE.labels(self._label).observe(len(batch))
            if self._on_batch is not None:
                self._on_batch(model.name, len(batch), seconds)
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
