"""The engines of a dxassist process, built in one place for the HTTP API and the DICOM listener.

Both processes file results the same way, so both get the same record, model host, worker pool, site
policy and outbox worker, started and stopped in the same order: the outbox worker starts after the
model host and stops before it, so no delivery is attempted by a process that is not fully up.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from inference.services._audit_trail import AuditedModelHost
from inference.services._context import Context, Workers
from inference.services._dead_letters import DeadLetterGauge
from inference.services._deliveries import build_outputs, sweep_spool
from inference.services._revocations import RevocationList
from inference.services._warmup import warm_up

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.runtime import Fetch, LocalModelLike

logger = logging.getLogger(__name__)


def registry_fetch(settings: Settings) -> Fetch:
    """``fetch(name, alias)`` through the local model cache, refreshed from the registry when there is one.

    With the embedded SQLite store, a missing ``mlflow.db`` means no registry exists yet (nothing was
    bootstrapped): the cache alone is used rather than creating an empty store as a side effect of serving.
    """

    def fetch(name: str, alias: str) -> LocalModelLike:
        from model_registry import ModelCache, RegistryClient

        uri = settings.tracking_uri
        client: RegistryClient | None = RegistryClient(uri, settings.artifact_root)
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            client = None
        return ModelCache(settings.model_cache).fetch(name, alias, client=client)

    return fetch


@asynccontextmanager
async def open_context(settings: Settings, *, fetch: Fetch | None = None) -> AsyncIterator[Context]:
    """Build, start and finally stop the engines of one process.

    Order: the record is migrated, the models are loaded, then the outbox worker starts delivering
    (results to the destinations of ``settings.delivery``); on exit the worker stops
    first (letting a send in progress finish), then the models, the pool and the record.

    Args:
        settings: Process settings.
        fetch: ``fetch(name, alias)`` for the model host; :func:`registry_fetch` when None.

    Yields:
        The :class:`Context` every service function takes.
    """
    from inference.delivery import OutboxWorker
    from inference.dicom import Limits
    from inference.dicom._budget import configure_decode_budget
    from inference.dicom._decode import configure_decode_threads
    from inference.policy import Policy
    from inference.record import HeadAnchor, Record
    from inference.runtime import configure_allocator

    configure_decode_budget(settings.limits.max_decode_bytes)
    configure_decode_threads(settings.runtime.decode_threads)
    configure_allocator(settings.runtime.allocator_keep_bytes)
    # The audit head is anchored in a signed file under DXASSIST_HOME after every append.
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    workers = Workers(settings.server.preprocess_workers)
    # Every model put into service, at start or by a hot swap, is written to the audit trail.
    host = AuditedModelHost(
        settings.runtime, fetch=fetch if fetch is not None else registry_fetch(settings), record=record
    )
    outbox = OutboxWorker.from_settings(record, settings.delivery)
    gauge = DeadLetterGauge.attach(record, settings.listener_spool)
    try:
        await asyncio.to_thread(record.migrate)
        ctx = Context(
            settings=settings,
            record=record,
            host=host,
            policy=Policy.load(settings.record.site_policy),
            workers=workers,
            limits=Limits.from_settings(settings.limits),
            outbox=outbox,
            revocations=RevocationList(record),
        )
        # Failed output builds are built again by the worker, with the models of this process.
        outbox.rebuild = functools.partial(build_outputs, ctx)
        # Headers spooled by a filing that a crash stopped before its commit: nothing will read them.
        await asyncio.to_thread(sweep_spool, ctx)
        await host.start()
        # The imaging path once on a synthetic image, so the first study is not the one that pays for
        # this process's imports and first runs.
        await warm_up(ctx)
        outbox.start()
        try:
            yield ctx
        finally:
            await outbox.stop()
    finally:
        await _shut_down(
            ("dead_letter_gauge.detach", lambda: gauge.detach(record)),
            ("host.stop", host.stop),
            ("workers.close", workers.close),
            ("record.close", record.close),
        )


async def _shut_down(*steps: tuple[str, Callable[[], Awaitable[None] | None]]) -> None:
    """Run every step of a shutdown in order, each even when one before it raised: a model host that
    fails to stop must not leave the record open (its audit anchor unwritten, its connections and
    write-ahead log open) nor the worker pool running.

    Raises:
        Exception: The first step's failure, once every step ran (each failure is logged with its step's
            name, and the exception's type and frames only: its text may quote patient data).
    """
    failed: Exception | None = None
    for name, step in steps:
        try:
            outcome = step()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as e:
            logger.exception(
                "The shutdown step %s failed; the next steps run all the same.",
                name,
                extra={"event": "shutdown_step_failed"},
            )
            failed = failed or e
    if failed is not None:
        raise failed
