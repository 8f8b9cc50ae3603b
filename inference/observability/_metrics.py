"""Prometheus metrics of the HTTP layer (inference metrics live in :mod:`inference.runtime`).

Labels hold route templates (``/v1/results/{result_id}``), never concrete URLs: a URL can carry a patient
identifier, and one label value per result would make the series count grow without bound.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector

UNMATCHED_ROUTE: Final = "<unmatched>"

REQUESTS = Counter(
    "dxassist_requests",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
)
REQUEST_SECONDS = Histogram(
    "dxassist_request_seconds",
    "Time to answer an HTTP request, by route template.",
    ("route",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
REJECTED_INPUTS = Counter(
    "dxassist_rejected_inputs",
    "Inputs refused with a 4xx answer, by error code (e.g. unsupported_transfer_syntax).",
    ("code",),
)


def observe_request(*, route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    REQUEST_SECONDS.labels(route=route).observe(seconds)


def count_rejected(code: str) -> None:
    """Count one refused input by its error code."""
    REJECTED_INPUTS.labels(code=code).inc()


MULTIPROCESS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Set by ``dxassist serve --workers N`` for its workers: where each keeps its values for the others."""

_SCRAPE_COLLECTORS: list[Collector] = []
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def register_scrape_collector(collector: Collector) -> None:
    """Register a collector whose values are read at scrape time (e.g. from the record), not kept by a
    process: with several workers it is answered once, by the worker the scrape reaches."""
    REGISTRY.register(collector)
    _SCRAPE_COLLECTORS.append(collector)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that died (a queue depth of a dead worker is not waiting)."""
    from prometheus_client import multiprocess

    dead = set()
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_FILE.match(path.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and their media type.

    One process: its registry. Several workers (``dxassist serve --workers``): every worker's counters and
    histograms added up, gauges combined as each declares (a sum of queue depths, the worst drift), and
    the scrape-time collectors once; whichever worker answers the scrape gives the same totals.
    """
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    from prometheus_client import multiprocess

    _forget_dead_workers(Path(directory))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    for collector in _SCRAPE_COLLECTORS:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


RETRIES = Counter(
    "dxassist_retries",
    "Failed attempts of asynchronous steps that will be tried again, by kind (study: the listener's "
    "analysis of a received study, build: the DICOM outputs of a result, delivery: one object to one "
    "destination) and error code.",
    ("kind", "code"),
)
DEAD_LETTERED = Counter(
    "dxassist_dead_lettered",
    "Items moved to the dead-letter state (no more automatic attempts), by kind and error code.",
    ("kind", "code"),
)


def count_retry(kind: str, code: str) -> None:
    """Count one failed attempt that will be retried."""
    RETRIES.labels(kind=kind, code=code).inc()


def count_dead_lettered(kind: str, code: str) -> None:
    """Count one item moved to the dead-letter state."""
    DEAD_LETTERED.labels(kind=kind, code=code).inc()


AUDIT_ANCHOR_FAILURES = Counter(
    "dxassist_audit_anchor_failures",
    "Writes of the audit trail's head anchor (audit/head.json) that failed (disk full, permission, a "
    "stalled write): the anchor stays behind the trail until a later write succeeds.",
)


def count_anchor_failure() -> None:
    """Count one failed write of the audit head anchor."""
    AUDIT_ANCHOR_FAILURES.inc()
