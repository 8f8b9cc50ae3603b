"""``dxassist batch score SOURCE``: the progress bar, the summary and the exit status of a batch run.

Kept apart from :mod:`inference.cli` (argument parsing). The progress line and the summary carry counts
and error codes only: never a patient's name, identifier, or a study's UIDs.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from inference.batch import Summary
    from inference.config import Settings

Echo = Callable[[str], None]
_BAR = 30


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal; a line per tenth of the archive otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._start = time.monotonic()
        self._last_tenth = -1

    def __call__(self, summary: Summary) -> None:
        total, done = summary.studies, summary.done
        fraction = done / total if total else 1.0
        refused = sum(summary.refused.values())
        failed = sum(summary.failed.values())
        elapsed = time.monotonic() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        filled = int(_BAR * fraction)
        line = (
            f"[{'#' * filled}{'.' * (_BAR - filled)}] {done}/{total} studies  scored {summary.scored}  "
            f"skipped {summary.skipped}  refused {refused}  failed {failed}  {rate:.1f}/s"
        )
        if self._tty:
            self._stream.write("\r" + line + ("\n" if done >= total else ""))
            self._stream.flush()
            return
        tenth = int(fraction * 10)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self._stream.write(line + "\n")
            self._stream.flush()


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def format_summary(summary: Summary, *, seconds: float, interrupted: bool) -> str:
    """The summary printed at the end of a run."""
    refused = sum(summary.refused.values())
    failed = sum(summary.failed.values())
    rate = summary.done / seconds if seconds > 0 else 0.0
    lines = [
        f"Batch scoring of {summary.source} with {summary.model} on {summary.workers} Dask worker(s)"
        + (" (interrupted)" if interrupted else ""),
        f"  studies found          {summary.studies}",
        f"  scored                 {summary.scored}  (not assessable: {summary.not_assessable})",
        f"  already in the record  {summary.skipped}",
        f"  refused                {refused}" + (f"  ({_counts(summary.refused)})" if refused else ""),
        f"  failed                 {failed}" + (f"  ({_counts(summary.failed)})" if failed else ""),
    ]
    if summary.unreadable_files:
        lines.append(
            f"  unreadable files       {summary.unreadable_files}  (not DICOM, or no StudyInstanceUID)"
        )
    if summary.per_worker:
        lines.append(f"  per worker             {_counts(summary.per_worker)}")
    lines.append(f"  {summary.done} studies in {seconds:.1f} s ({rate:.1f} studies/s)")
    if summary.run_id:
        lines.append(f"  run id                 {summary.run_id}  (on its log lines and audit entries)")
    missing = summary.studies - summary.done + failed
    if interrupted or failed:
        lines.append(f"{missing} studies are still to score: run the same command again to score only those.")
    return "\n".join(lines)


def resolve_facility(settings: Settings, given: str | None) -> str:
    """The facility owning the run's results.

    ``--facility`` first, then ``DXASSIST_BATCH_FACILITY``, then the one facility the configuration names.

    Raises:
        BatchError: None of these names exactly one facility (the message tells the operator what to do).
    """
    from inference.batch import BatchError

    if given is not None:
        if not given.strip():
            raise BatchError("--facility is empty: name the facility that owns the archive's results.")
        return given
    if settings.batch.batch_facility:
        return settings.batch.batch_facility
    named = settings.configured_facilities()
    if len(named) == 1:
        return next(iter(named))
    found = f"the configuration names {len(named)} facilities" if named else "the configuration names none"
    raise BatchError(
        f"Which facility owns this archive's results? Give --facility FACILITY or set "
        f"DXASSIST_BATCH_FACILITY ({found})."
    )


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def batch_score_command(
    settings: Settings,
    *,
    source: str,
    facility: str | None,
    scheduler: str | None,
    workers: int | None,
    model_version: str | None,
    json_output: bool,
    progress: bool,
    echo: Echo,
) -> int:
    """Run a batch; 0 when every study has an outcome, 1 when some failed, 130 when interrupted.

    ``facility`` None: see :func:`resolve_facility`. The run has an id of its own (``batch-<hex>``,
    printed in the summary): the driver's log lines, and the workers' log lines and audit entries,
    carry it as ``request_id``.

    Raises:
        BatchError: The run could not start (no facility, extra missing, source unreadable, model
            unavailable).
    """
    from inference.batch import default_workers, open_source, score_archive
    from inference.observability import correlated, new_correlation_id

    with correlated(new_correlation_id("batch")):
        owner = resolve_facility(settings, facility)
        archive = open_source(source, page_size=settings.batch.batch_qido_page_size)
        bar = ProgressBar(sys.stderr) if progress else None
        latest: list[Summary] = []

        def on_progress(summary: Summary) -> None:
            latest[:1] = [summary]
            if bar is not None:
                bar(summary)

        # A `kill` (or a scheduler's stop) ends the run as Ctrl-C does: the cluster is closed, counts printed.
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        start = time.monotonic()
        interrupted = False
        try:
            summary = score_archive(
                archive,
                settings=settings,
                facility=owner,
                scheduler=scheduler,
                workers=workers if workers is not None else default_workers(),
                model_version=model_version,
                progress=on_progress,
            )
        except KeyboardInterrupt:
            if not latest:
                raise
            summary, interrupted = latest[0], True
            if bar is not None:
                sys.stderr.write("\n")
        finally:
            signal.signal(signal.SIGTERM, previous)
        seconds = time.monotonic() - start
        if json_output:
            echo(json.dumps(summary.as_dict() | {"seconds": round(seconds, 3), "interrupted": interrupted}))
        else:
            echo(format_summary(summary, seconds=seconds, interrupted=interrupted))
        if interrupted:
            return 130
        return 1 if summary.failed else 0
