"""Prometheus metrics of the HTTP layer (inference metrics live in :mod:`inference.runtime`).

Labels hold route templates (``/v1/results/{result_id}``), never concrete URLs: a URL can carry a patient
identifier, and one label value per result would make the series count grow without bound.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

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


def exposition() -> tuple[bytes, str]:
    """The whole process registry in Prometheus text format, and its media type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


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
