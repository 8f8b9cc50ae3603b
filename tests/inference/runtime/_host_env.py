"""A started :class:`ModelHost` over a model cache, for the body of one test (the runtime tests' harness)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import tiny_models

from inference.config import Settings
from inference.runtime import BatchHook, ModelHost

T = TypeVar("T")


def run_with_host(
    settings: Settings,
    cache: Path,
    body: Callable[[ModelHost], Awaitable[T]],
    *,
    on_batch: BatchHook | None = None,
) -> T:
    """Start a host on ``cache`` (``on_batch`` called after each batch), run ``body`` with it, stop it."""

    async def main() -> T:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(cache), on_batch=on_batch)
        await host.start()
        try:
            return await body(host)
        finally:
            await host.stop()

    return asyncio.run(main())
