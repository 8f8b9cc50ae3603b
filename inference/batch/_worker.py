"""What runs inside each Dask worker: one served-model context, and the scoring of one study.

Each worker process opens the same engines as ``dxassist serve`` (:func:`inference.services.open_context`:
record, model host, worker pool, site policy, outbox) once, in a plugin, on an event loop of its own, and
scores every study it is given through the same analysis entry as the API (``source="batch"``). Results
therefore land in the same record with the same idempotency: a study this model version already filed
is skipped before decoding; a resend the record refuses is counted by its code, never filed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from inference.batch._errors import BatchError, SourceError

try:
    from distributed import WorkerPlugin as _PluginBase
except ImportError:  # no 'batch' extra: the driver says so in one line before any plugin is made
    _PluginBase = object  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from inference.batch._dicomweb import DicomWebSource
    from inference.batch._sources import FolderSource, StudyRef
    from inference.config import Settings
    from inference.runtime import Fetch
    from inference.services import Actor, Context

logger = logging.getLogger(__name__)

PLUGIN_NAME = "dxassist-scoring"
IMAGING_MODEL = "cxr-findings"
SERVED_ALIAS = "champion"

Status = Literal["scored", "skipped", "refused", "failed"]

# Studies of one chunk analysed at once by a worker: each holds one decoded study (its pixels) in memory.
IN_FLIGHT = 4


@dataclass(frozen=True)
class Scored:
    """What became of one study (no patient data: it travels to the driver and into the summary).

    Attributes:
        status: ``scored`` (filed now), ``skipped`` (already in the record from this model version),
            ``refused`` (by ``code``) or ``failed`` (an error that a re-run may not repeat).
        code: The refusal code, or the failure's error type.
        assessable: For a scored study, whether the image was within the model's distribution.
        worker: The Dask worker's address (who did the work; a network address, no patient data).
    """

    status: Status
    code: str | None = None
    assessable: bool | None = None
    worker: str = ""


def pinned_fetch(settings: Settings, model_version: str | None) -> Fetch:
    """``fetch(name, alias)`` serving ``model_version`` of the imaging model instead of its champion."""
    from inference.services import registry_fetch

    fetch = registry_fetch(settings)
    if model_version is None:
        return fetch

    def pinned(name: str, alias: str) -> Any:
        if name != IMAGING_MODEL or alias != SERVED_ALIAS:
            return fetch(name, alias)
        from model_registry import ModelCache

        return ModelCache(settings.model_cache).fetch_version(name, model_version, client=_client(settings))

    return pinned


def _client(settings: Settings) -> Any:
    from pathlib import Path

    from model_registry import RegistryClient

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    return RegistryClient(uri, settings.artifact_root)


class _Engines:
    """The context of one worker process, held open on a private event loop thread."""

    def __init__(
        self, settings: Settings, model_version: str | None, facility: str, run_id: str | None = None
    ) -> None:
        from inference.security import Principal
        from inference.services import Actor, open_context

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dxassist-batch", daemon=True)
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        self.run_id = run_id
        fetch = pinned_fetch(settings, model_version)
        self.ctx: Context = self.run(self._stack.enter_async_context(open_context(settings, fetch=fetch)))
        # The facility that sent the archive owns its results, as a facility-bound pacs token would.
        self.actor: Actor = Actor(Principal(subject="batch", role="pacs", facility=facility), client=None)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(self._correlated(coro), self._loop).result()

    async def _correlated(self, coro: Any) -> Any:
        # The loop's thread does not see the caller's context: bind the batch run's id here, so the lines
        # and audit entries of this worker's analyses carry it (tasks started inside inherit it).
        from inference.observability import correlated

        if self.run_id is None:
            return await coro
        with correlated(self.run_id):
            return await coro

    def close(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


class ScoringPlugin(_PluginBase):
    """A Dask worker plugin: opens the engines when the worker joins, closes them when it leaves.

    The worker reads its settings from its own environment (``DXASSIST_*``, ``MLFLOW_TRACKING_URI``), as
    a server replica does: database passwords never travel through the scheduler.

    Args:
        model_version: The imaging model version to score with; None for the champion.
        facility: The facility the results belong to.
        run_id: The batch run's correlation id (``batch-<hex>``): the worker's analyses run under it, so
            their log lines and audit entries share it with the driver's.
    """

    name = PLUGIN_NAME

    def __init__(self, *, model_version: str | None, facility: str, run_id: str | None = None) -> None:
        self.model_version = model_version
        self.facility = facility
        self.run_id = run_id
        self.engines: _Engines | None = None

    async def setup(self, worker: Any) -> None:
        """Open the engines (migrations run, models loaded) before the first study.

        In a thread: loading models takes seconds, and the worker's own event loop must keep answering
        the scheduler's heartbeats meanwhile.
        """
        from inference.config import get_settings
        from inference.observability._phi_guard import install_process_guard

        install_process_guard()
        settings = get_settings()
        self.engines = await asyncio.to_thread(
            _Engines, settings, self.model_version, self.facility, self.run_id
        )

    async def teardown(self, worker: Any) -> None:
        """Stop the engines (a delivery in progress finishes first)."""
        engines, self.engines = self.engines, None
        if engines is not None:
            await asyncio.to_thread(engines.close)


def _engines() -> _Engines:
    from distributed import get_worker

    plugin = get_worker().plugins.get(PLUGIN_NAME)
    engines = getattr(plugin, "engines", None)
    if not isinstance(engines, _Engines):
        raise BatchError("This Dask worker has no dxassist engines: the scoring plugin did not start.")
    return engines


def score_studies(refs: Sequence[StudyRef], source: FolderSource | DicomWebSource) -> list[Scored]:
    """Score a chunk of studies on this worker (the Dask task); one outcome per study, in order.

    A chunk per task rather than a study per task: the scheduler's round trip and the task's bookkeeping
    are paid once per chunk. Inside the chunk up to :data:`IN_FLIGHT` studies are analysed at once on
    the worker's event loop, so reading and decoding one overlaps the model and the record's commit of
    another, and the served model's micro-batcher can score several images in one run.
    """
    from distributed import get_worker

    engines = _engines()
    address = str(get_worker().address)
    results: list[Scored] = engines.run(_score_many(engines.ctx, engines.actor, list(refs), source))
    return [replace(result, worker=address) for result in results]


async def _score_many(
    ctx: Context, actor: Actor, refs: list[StudyRef], source: FolderSource | DicomWebSource
) -> list[Scored]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(ref: StudyRef) -> Scored:
        async with gate:
            try:
                return await _score(ctx, actor, ref, source)
            except Exception as e:  # noqa: BLE001 - one study's failure must not stop the batch; a re-run retries it
                # Only errors that may not repeat get here (record or model unavailable, source unreachable,
                # a bug): the input's own faults are refusals, counted by code in _score.
                # A source's message names the server and what it did wrong (no patient data, no UID);
                # any other error's text may quote the data, so only its type is logged.
                reason = str(e) if isinstance(e, SourceError) else type(e).__name__
                logger.warning(
                    "a study could not be scored (%s)",
                    reason,
                    extra={"event": "batch_study", "code": "failed"},
                )
                return Scored("failed", type(e).__name__)

    return list(await asyncio.gather(*(one(ref) for ref in refs)))


async def _already_filed(
    ctx: Context, actor: Actor, ref: StudyRef, source: FolderSource | DicomWebSource
) -> bool:
    from inference.record import ModelRef

    # Headers only (no pixel data read, nothing retrieved): resuming a large archive stays cheap.
    uids = await ctx.workers.run(source.instance_uids, ref, max_instances=ctx.limits.max_instances)
    if uids is None:
        return False
    served = ctx.host.imaging
    model = ModelRef(
        name=served.name,
        version=served.version,
        sha256=served.sha256,
        provider=served.provider,
        synthetic=served.synthetic,
    )
    found = await asyncio.to_thread(ctx.record.results.filed_imaging, model=model, sop_instance_uids=uids)
    # Filed by another facility: not ours to skip; the analysis path refuses and audits it.
    return found is not None and found[1] == actor.principal.facility


async def _score(ctx: Context, actor: Actor, ref: StudyRef, source: FolderSource | DicomWebSource) -> Scored:
    from inference.dicom import DicomRejected, read_study
    from inference.record import Conflict, ConsentObjection, InvalidData
    from inference.services import analyse_decoded

    served = ctx.host.imaging
    try:
        if await _already_filed(ctx, actor, ref, source):
            return Scored("skipped")
        blobs = await ctx.workers.run(
            source.read,
            ref,
            max_instance_bytes=ctx.limits.max_instance_bytes,
            max_instances=ctx.limits.max_instances,
        )
        study = await ctx.workers.run(
            read_study, blobs, limits=ctx.limits, target_size=served.imaging_meta.input_size
        )
        outcome = await analyse_decoded(
            ctx=ctx, actor=actor, study=study, source="batch", accept_language=None, served=served
        )
    except (DicomRejected, ConsentObjection, Conflict) as e:
        return Scored("refused", e.code)
    except InvalidData as e:
        # A value the record cannot hold (an issuer too long once upper-cased): refused the same way on
        # every run, so counted under the API's code, never as a failure that tells the operator to re-run.
        return Scored("refused", e.code)
    if not outcome.created:
        return Scored("skipped")
    return Scored("scored", assessable=bool(getattr(outcome.result, "assessable", True)))
