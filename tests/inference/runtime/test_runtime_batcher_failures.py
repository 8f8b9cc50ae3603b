"""A batch that cannot even be stacked fails its own requests and nothing else: the batcher keeps serving.

Every wait is guarded by a generous liveness timeout (not a speed assertion): before the fix the
worker task died on the stacking and every request, then and later, waited for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from _host_env import run_with_host

from inference.config import Settings
from inference.runtime import InferenceFailed, MicroBatcher, ModelHost, ServedModel

T = TypeVar("T")

LIVENESS_S = 30.0


def _row_sums(model: ServedModel, stacked: np.ndarray) -> list[float]:
    return [float(row.sum()) for row in stacked]


def _with_batcher(
    settings: Settings, cache: Path, body: Callable[[MicroBatcher[float], ServedModel], Awaitable[T]]
) -> T:
    async def run(host: ModelHost) -> T:
        with ThreadPoolExecutor(1) as executor:
            batcher: MicroBatcher[float] = MicroBatcher(
                _row_sums, max_size=8, max_wait=0.0, executor=executor, label="test-failures"
            )
            batcher.start()
            try:
                return await body(batcher, host.imaging)
            finally:
                await batcher.stop()

    return run_with_host(settings, cache, run)


def test_tensors_of_different_shapes_in_one_batch_are_each_answered(cache: Path, settings: Settings) -> None:
    async def body(batcher: MicroBatcher[float], model: ServedModel) -> list[float]:
        # Both queued before the worker collects: one batch window, two shapes.
        small = batcher.submit(model, np.ones((1, 4, 4), np.float32))
        large = batcher.submit(model, np.ones((1, 8, 8), np.float32))
        return list(await asyncio.wait_for(asyncio.gather(small, large), LIVENESS_S))

    assert _with_batcher(settings, cache, body) == [16.0, 64.0]


def test_a_batch_too_large_to_stack_fails_alone_and_the_next_request_is_served(
    cache: Path, settings: Settings
) -> None:
    # A view of 2**60 elements costs no memory; stacking it asks for 4 EiB, which no machine can
    # allocate (a MemoryError, as a batch too large for the memory left would raise).
    huge = np.broadcast_to(np.float32(0.0), (1, 2**30, 2**30))

    async def body(batcher: MicroBatcher[float], model: ServedModel) -> float:
        doomed = batcher.submit(model, huge)
        with pytest.raises(InferenceFailed):
            await asyncio.wait_for(doomed, LIVENESS_S)
        return await asyncio.wait_for(batcher.submit(model, np.ones((1, 4, 4), np.float32)), LIVENESS_S)

    assert _with_batcher(settings, cache, body) == 16.0
