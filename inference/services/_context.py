"""What every service function is handed: the long-lived engines of the process, and who is asking."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.delivery import OutboxWorker
    from inference.dicom import Limits
    from inference.policy import Policy
    from inference.record import Record
    from inference.runtime import ModelHost
    from inference.security import Principal
    from inference.services._revocations import RevocationList

P = ParamSpec("P")
T = TypeVar("T")


class Workers:
    """A bounded thread pool for CPU-heavy steps (DICOM decoding, preprocessing, heatmaps).

    numpy, pydicom's codecs and Pillow release the GIL for most of their work, so a few threads keep the
    event loop free; the bound keeps a burst of uploads from starving ONNX Runtime of cores.

    Args:
        max_workers: ``settings.server.preprocess_workers``.
    """

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dxassist-decode")

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the pool and await its result."""
        loop = asyncio.get_running_loop()
        # In the caller's context, so a record logged on the pool carries the request's id.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, context.run, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Wait for running work and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class Context:
    """The engines a service needs, built once in the app's lifespan.

    Attributes:
        settings: Process settings.
        record: The patient record.
        host: The served models.
        policy: The site's priority policy.
        workers: Pool for decoding and preprocessing.
        limits: DICOM size limits.
        outbox: Delivers results to the configured destinations; None in a process that delivers
            nothing (results are then filed only).
        revocations: The revoked bearer tokens (``dxassist token revoke``) the API refuses; None in a
            process that takes no tokens.
    """

    settings: Settings
    record: Record
    host: ModelHost
    policy: Policy
    workers: Workers
    limits: Limits
    outbox: OutboxWorker | None = None
    revocations: RevocationList | None = None


@dataclass(frozen=True)
class Actor:
    """Who is asking: the authenticated principal and the client's network address (for the audit trail)."""

    principal: Principal
    client: str | None = None


async def db(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking record call in a thread, so a slow database never stalls the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)
