"""The micro-batcher's wait: a lone image is scored at once; a batch waits only for images announced
(``ModelHost.expecting_images``) and still being prepared, and an announcement that ends without an
image (a failed preparation, a cancelled request) never leaves a batch waiting.

``batch_max_wait_ms`` is an hour in most of these tests, so a batch that waited when it should not would
hang: every wait is guarded by a generous liveness timeout (not a speed assertion).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from _host_env import run_with_host

from inference.config import Settings
from inference.runtime import ImagingOutput, InputRejected, ModelHost

T = TypeVar("T")

AN_HOUR_MS = 3_600_000.0
LIVENESS_S = 30.0  # far beyond any scoring of the tiny model: reaching it means the batch was stuck


def _run(settings: Settings, cache: Path, body: Callable[[ModelHost], Awaitable[T]], sizes: list[int]) -> T:
    return run_with_host(settings, cache, body, on_batch=lambda name, size, seconds: sizes.append(size))


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.3, size=(1, 64, 64)).astype(np.float32)


async def _turns(n: int) -> None:
    """Let the event loop run ``n`` rounds of ready callbacks (not a timed wait)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(10_000):
        if predicate():
            return
        await _turns(1)
    pytest.fail(f"The event loop never reached: {what}.")


async def _held_batch(host: ModelHost) -> asyncio.Task[ImagingOutput]:
    """Submit one announced image and return its task once its batch is holding for company.

    The caller must have another image announced. The worker has had every chance to run the batch
    (many loop rounds after the submit): it is still queued, and nothing ran.
    """

    async def first() -> ImagingOutput:
        with host.expecting_images():
            [out] = await host.score_images([_image(1)])
            return out

    task = asyncio.create_task(first())
    await _until(lambda: host.queue_depth == 1, "the first image queued")
    await _turns(50)
    assert host.queue_depth == 1 and host.batches_run == 0, "the batch ran without the announced image"
    return task


def test_a_lone_image_is_scored_without_waiting(cache: Path, settings: Settings) -> None:
    settings.runtime.batch_max_wait_ms = AN_HOUR_MS
    sizes: list[int] = []

    async def body(host: ModelHost) -> list[str]:
        [plain] = await asyncio.wait_for(host.score_images([_image(1)]), LIVENESS_S)

        async def announced() -> ImagingOutput:
            with host.expecting_images():
                [out] = await host.score_images([_image(2)])
                return out

        out = await asyncio.wait_for(announced(), LIVENESS_S)
        return [plain.model.version, out.model.version]

    assert _run(settings, cache, body, sizes) == ["1", "1"]
    assert sizes == [1, 1]


def test_a_batch_waits_for_an_announced_image_and_runs_both_at_once(cache: Path, settings: Settings) -> None:
    settings.runtime.batch_max_wait_ms = AN_HOUR_MS
    sizes: list[int] = []

    async def body(host: ModelHost) -> tuple[ImagingOutput, ImagingOutput, int]:
        prepared = asyncio.Event()

        async def second() -> ImagingOutput:
            with host.expecting_images():
                await prepared.wait()  # being prepared
                [out] = await host.score_images([_image(2)])
                return out

        preparing = asyncio.create_task(second())
        await _turns(1)  # the second image is announced before the first is submitted
        waiting = await _held_batch(host)
        prepared.set()
        a, b = await asyncio.wait_for(asyncio.gather(waiting, preparing), LIVENESS_S)
        return a, b, host.batches_run

    a, b, runs = _run(settings, cache, body, sizes)
    assert sizes == [2] and runs == 1
    assert not np.allclose(a.logits, b.logits)  # each image got its own row back


def test_an_announced_image_that_fails_does_not_hold_the_batch(cache: Path, settings: Settings) -> None:
    settings.runtime.batch_max_wait_ms = AN_HOUR_MS
    sizes: list[int] = []

    async def body(host: ModelHost) -> str:
        prepared = asyncio.Event()

        async def unusable() -> None:
            with host.expecting_images():
                await prepared.wait()
                await host.score_images([np.zeros((1, 32, 32), np.float32)])  # wrong size: rejected

        failing = asyncio.create_task(unusable())
        await _turns(1)
        waiting = await _held_batch(host)
        prepared.set()
        with pytest.raises(InputRejected):
            await asyncio.wait_for(failing, LIVENESS_S)
        await asyncio.wait_for(waiting, LIVENESS_S)

        # A preparation that raises before anything is submitted leaves nothing announced either.
        with pytest.raises(ValueError, match="not a radiograph"):
            with host.expecting_images():
                raise ValueError("not a radiograph")
        [lone] = await asyncio.wait_for(host.score_images([_image(3)]), LIVENESS_S)
        return lone.model.version

    assert _run(settings, cache, body, sizes) == "1"
    assert sizes == [1, 1]


def test_a_cancelled_preparation_does_not_hold_the_batch(cache: Path, settings: Settings) -> None:
    settings.runtime.batch_max_wait_ms = AN_HOUR_MS
    sizes: list[int] = []

    async def body(host: ModelHost) -> str:
        async def abandoned() -> None:
            with host.expecting_images():
                await asyncio.Event().wait()  # the client goes away while the image is prepared
                await host.score_images([_image(2)])

        preparing = asyncio.create_task(abandoned())
        await _turns(1)
        waiting = await _held_batch(host)
        preparing.cancel()
        await asyncio.wait_for(waiting, LIVENESS_S)
        with pytest.raises(asyncio.CancelledError):
            await preparing
        [lone] = await asyncio.wait_for(host.score_images([_image(3)]), LIVENESS_S)
        return lone.model.version

    assert _run(settings, cache, body, sizes) == "1"
    assert sizes == [1, 1]


def test_max_wait_zero_never_waits_for_announced_images(cache: Path, settings: Settings) -> None:
    settings.runtime.batch_max_wait_ms = 0
    sizes: list[int] = []

    async def body(host: ModelHost) -> int:
        prepared = asyncio.Event()

        async def second() -> None:
            with host.expecting_images():
                await prepared.wait()
                await host.score_images([_image(2)])

        preparing = asyncio.create_task(second())
        await _turns(1)
        with host.expecting_images():
            await asyncio.wait_for(host.score_images([_image(1)]), LIVENESS_S)  # while the second is prepared
        runs = host.batches_run
        prepared.set()
        await asyncio.wait_for(preparing, LIVENESS_S)
        return runs

    assert _run(settings, cache, body, sizes) == 1
    assert sizes == [1, 1]


def test_a_full_batch_runs_without_waiting_for_more(cache: Path, settings: Settings) -> None:
    settings.runtime.batch_max_wait_ms = AN_HOUR_MS
    settings.runtime.batch_max_size = 2
    sizes: list[int] = []

    async def body(host: ModelHost) -> int:
        prepared = asyncio.Event()

        async def later() -> None:
            with host.expecting_images():
                await prepared.wait()
                await host.score_images([_image(3)])

        preparing = asyncio.create_task(later())
        await _turns(1)
        with host.expecting_images(2):
            await asyncio.wait_for(host.score_images([_image(1), _image(2)]), LIVENESS_S)
        runs = host.batches_run
        prepared.set()
        await asyncio.wait_for(preparing, LIVENESS_S)
        return runs

    assert _run(settings, cache, body, sizes) == 1
    assert sizes == [2, 1]
