"""The driver of a batch run: scan the source, start (or join) a Dask cluster, score, count.

Only a bounded window of studies is in flight at a time (a few per worker), so the scheduler's memory
and the driver's stay flat however large the archive. Nothing is kept between runs but the record
itself: a re-run asks the workers to score every study again, and each one already filed by the same
model version is skipped before it is decoded. That is what makes an interrupted run resumable.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inference.batch._errors import BatchError, ExtraMissing
from inference.observability import current_request_id

if TYPE_CHECKING:
    from inference.batch._dicomweb import DicomWebSource
    from inference.batch._sources import FolderSource
    from inference.batch._worker import Scored
    from inference.config import Settings

# Chunks queued per worker: one being scored, one waiting, so a worker never idles on the driver.
_PER_WORKER = 2
# Studies per task: large enough to amortise the scheduler's round trip, small enough that every worker
# gets several chunks (the last ones do not leave a worker idle for long) and the progress bar moves.
_CHUNK_MAX = 8
_WORKER_WAIT_SECONDS = 120


@dataclass
class Summary:
    """The counts of one run (no patient data).

    Attributes:
        source: The archive (folder path or DICOMweb base URL).
        model: ``name version`` of the imaging model that scored.
        workers: Dask workers that took part.
        studies: Studies found in the source.
        unreadable_files: Files of a folder source that are not DICOM or name no study.
        scored: Filed by this run.
        not_assessable: Of ``scored``, those the model refused to read (out of its distribution).
        skipped: Already in the record from this model version (an earlier or interrupted run).
        refused: Refusals by code (the same codes as the API's errors).
        failed: Failures by error type; a re-run tries these studies again.
        per_worker: Studies with an outcome per Dask worker address.
        scoring_seconds: From the first study sent to a worker to the last outcome (the cluster's
            start and the scan excluded).
        run_id: The run's correlation id (``batch-<hex>``), carried by its log lines and audit entries.
    """

    source: str
    model: str = ""
    workers: int = 0
    studies: int = 0
    unreadable_files: int = 0
    scored: int = 0
    not_assessable: int = 0
    skipped: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    scoring_seconds: float = 0.0
    per_worker: Counter[str] = field(default_factory=Counter)
    run_id: str | None = None

    @property
    def done(self) -> int:
        """Studies with an outcome so far."""
        return self.scored + self.skipped + sum(self.refused.values()) + sum(self.failed.values())

    def add(self, scored: Scored) -> None:
        """Count one study's outcome."""
        if scored.worker:
            self.per_worker[scored.worker] += 1
        if scored.status == "scored":
            self.scored += 1
            self.not_assessable += scored.assessable is False
        elif scored.status == "skipped":
            self.skipped += 1
        elif scored.status == "refused":
            self.refused[scored.code or "refused"] += 1
        else:
            self.failed[scored.code or "error"] += 1

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "source": self.source,
            "model": self.model,
            "workers": self.workers,
            "studies": self.studies,
            "unreadable_files": self.unreadable_files,
            "scored": self.scored,
            "not_assessable": self.not_assessable,
            "skipped": self.skipped,
            "refused": dict(sorted(self.refused.items())),
            "failed": dict(sorted(self.failed.items())),
            "scoring_seconds": round(self.scoring_seconds, 3),
            "per_worker": dict(sorted(self.per_worker.items())),
            "run_id": self.run_id,
        }


Progress = Callable[[Summary], None]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ExtraMissing(
            "Batch scoring needs Dask distributed, not installed here: pip install 'dxassist[batch]'."
        ) from e
    return distributed


def preflight(settings: Settings, model_version: str | None) -> str:
    """Fetch the imaging model the workers will serve (into the local cache); its ``name version``.

    Done once by the driver so a wrong version fails the command at once, with the registry's answer,
    and the workers of a local cluster find the file already cached.

    Raises:
        BatchError: The model version cannot be fetched.
    """
    from inference.batch._worker import IMAGING_MODEL, SERVED_ALIAS, pinned_fetch
    from inference.record import HeadAnchor, Record
    from model_registry import RegistryError

    # Migrated here, once: the workers then start on a schema at its head instead of racing to build it.
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
    finally:
        record.close()
    try:
        local = pinned_fetch(settings, model_version)(IMAGING_MODEL, SERVED_ALIAS)
    except RegistryError as e:
        raise BatchError(str(e)) from e
    return f"{local.name} {local.version}"


def _quiet_dask() -> None:
    import dask

    # Dask's own INFO lines (addresses, worker starts) would bury the progress bar; errors still show.
    dask.config.set({"distributed.logging.distributed": "error", "distributed.admin.tick.limit": "30s"})
    logging.getLogger("distributed").setLevel(logging.ERROR)


def score_archive(
    source: FolderSource | DicomWebSource,
    *,
    settings: Settings,
    facility: str,
    scheduler: str | None = None,
    workers: int = 2,
    model_version: str | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Score every study of ``source`` on Dask and file the results in the record.

    Args:
        source: The archive.
        settings: The driver's settings (the workers read their own environment).
        facility: The facility the results belong to.
        scheduler: A Dask scheduler address (``tcp://host:8786``); None starts a local cluster of
            ``workers`` processes on this machine.
        workers: Worker processes of the local cluster.
        model_version: The imaging model version to score with; None for the champion.
        progress: Called after each study with the running counts.

    Raises:
        ExtraMissing: Dask distributed is not installed.
        BatchError: The source cannot be read, or the model cannot be fetched, or no worker started.
    """
    distributed = _distributed()
    from inference.batch._worker import ScoringPlugin

    summary = Summary(source=source.describe(), run_id=current_request_id())
    summary.model = preflight(settings, model_version)
    scan = source.scan()
    summary.studies = len(scan.studies)
    summary.unreadable_files = scan.unreadable
    if progress is not None:
        progress(summary)
    if not scan.studies:
        return summary
    _quiet_dask()
    cluster = None
    if scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env=_local_worker_env(workers),
        )
    try:
        with distributed.Client(cluster if cluster is not None else scheduler, timeout="30s") as client:
            if cluster is None:
                try:  # a cluster being started may have no worker yet: wait a little for the first
                    client.wait_for_workers(1, timeout=_WORKER_WAIT_SECONDS)
                except TimeoutError as e:
                    raise BatchError(
                        f"No Dask worker joined the scheduler at {scheduler} within {_WORKER_WAIT_SECONDS} s."
                    ) from e
            plugin = ScoringPlugin(model_version=model_version, facility=facility, run_id=summary.run_id)
            client.register_plugin(plugin)
            summary.workers = len(client.scheduler_info()["workers"])
            if summary.workers == 0:
                raise BatchError("The Dask cluster has no worker to score on.")
            _drain(distributed, client, scan.studies, source, summary, progress)
    except OSError as e:
        raise BatchError(f"The Dask scheduler at {scheduler} did not answer.") from e
    finally:
        if cluster is not None:
            cluster.close()
    return summary


def _local_worker_env(workers: int) -> dict[str, str]:
    """Thread counts for the workers of a local cluster: the machine's cores shared between them.

    Each worker would otherwise size ONNX Runtime and its decode pool as a whole server does (every
    core), and N workers would oversubscribe the machine N times. Settings the operator set win.
    """
    cores = os.cpu_count() or 1
    env = {}
    if "DXASSIST_INTRA_OP_THREADS" not in os.environ:
        env["DXASSIST_INTRA_OP_THREADS"] = str(max(1, cores // max(1, workers)))
    if "DXASSIST_PREPROCESS_WORKERS" not in os.environ:
        env["DXASSIST_PREPROCESS_WORKERS"] = "1"
    return env


def chunk_size(studies: int, workers: int) -> int:
    """Studies per Dask task: about eight chunks per worker, at most :data:`_CHUNK_MAX` studies each."""
    return max(1, min(_CHUNK_MAX, studies // max(1, workers * 8)))


def _drain(
    distributed: Any,
    client: Any,
    studies: tuple[Any, ...],
    source: Any,
    summary: Summary,
    progress: Progress | None,
) -> None:
    from inference.batch._worker import Scored, score_studies

    size = chunk_size(len(studies), summary.workers)
    window = max(1, summary.workers * _PER_WORKER)
    chunks = (studies[i : i + size] for i in range(0, len(studies), size))
    # Only the chunk's study references travel (paths or UIDs), and each worker sends back small counts:
    # the results themselves are written to the record by the workers, never gathered here.
    sizes: dict[str, int] = {}

    def submit() -> Any:
        chunk = next(chunks, None)
        if chunk is None:
            return None
        future = client.submit(score_studies, list(chunk), source, pure=False)
        sizes[future.key] = len(chunk)
        return future

    started = time.monotonic()
    first = [f for f in (submit() for _ in range(window)) if f is not None]
    queue = distributed.as_completed(first)
    for future in queue:
        count = sizes.pop(future.key)
        try:
            outcomes: list[Scored] = future.result()
        except Exception as e:  # noqa: BLE001 - a worker died under this chunk more than once
            outcomes = [Scored("failed", type(e).__name__)] * count
        future.release()
        for scored in outcomes:
            summary.add(scored)
        summary.scoring_seconds = time.monotonic() - started
        if progress is not None:
            progress(summary)
        following = submit()
        if following is not None:
            queue.add(following)


def default_workers() -> int:
    """Local worker processes by default: the machine's cores, at most 4 (each holds the models)."""
    return max(1, min(4, os.cpu_count() or 1))
