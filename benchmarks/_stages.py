"""Where the server's time goes: its per-stage histograms, read from ``GET /metrics`` around a timed run.

The server times each stage of a study (``dxassist_stage_seconds{stage, model, version}``,
``inference.analysis._metrics``: decode, preprocess, inference, explain, record_commit, and overlay for
a heatmap drawn on its first GET) and each request in its middleware (``dxassist_request_seconds{route}``).
Reading ``/metrics`` right before and right after the measured requests of one sequential client, the
difference of each stage's ``_sum`` divided by the number of requests is that stage's mean time per
request; what the client waited beyond the stages is everything no stage covers: HTTP and the multipart
upload, authentication, the patient and consent look-ups, the hops to and from the worker pool, the stored
rendering and training input, the response. The middleware's own time for the route splits that
remainder once more: what lies outside it is the client, the loopback and uvicorn before the app.

Means, not medians: only means add up. With ``dxassist serve --workers N`` ``/metrics`` adds every
worker's histograms up (prometheus_client's multiprocess mode), so the same difference holds; the
benchmark reads it around its one-process latency runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

STAGE_METRIC = "dxassist_stage_seconds"
REQUEST_METRIC = "dxassist_request_seconds"
# inference.analysis.STAGES, in pipeline order (not imported: reading a scrape needs none of the server).
STAGE_ORDER = ("decode", "preprocess", "inference", "explain", "record_commit", "overlay")
# What no stage covers, by kind of request (``outside_stages_is`` in the results).
UPLOAD_OUTSIDE = (
    "HTTP and the multipart upload, auth, patient and consent, worker-pool hops, stored rendering and "
    "training input, the response"
)
PICTURE_OUTSIDE = "HTTP, auth, the access audit, worker-pool hops, sending the PNG"


@dataclass(frozen=True)
class Totals:
    """Cumulative ``(seconds, observations)`` of one scrape: per stage (over every model and version) and
    per route template."""

    stages: Mapping[str, tuple[float, float]]
    routes: Mapping[str, tuple[float, float]]


def parse(text: str) -> Totals:
    """The stage and request totals of one ``/metrics`` answer (Prometheus text format)."""
    found: dict[str, dict[str, list[float]]] = {STAGE_METRIC: {}, REQUEST_METRIC: {}}
    label = {STAGE_METRIC: "stage", REQUEST_METRIC: "route"}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        for sample in family.samples:
            kind = sample.name.removeprefix(family.name)
            if kind not in ("_sum", "_count") or label[family.name] not in sample.labels:
                continue
            totals = found[family.name].setdefault(sample.labels[label[family.name]], [0.0, 0.0])
            totals[0 if kind == "_sum" else 1] += float(sample.value)
    return Totals(
        stages={k: (v[0], v[1]) for k, v in found[STAGE_METRIC].items()},
        routes={k: (v[0], v[1]) for k, v in found[REQUEST_METRIC].items()},
    )


def _order(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


@dataclass(frozen=True)
class Budget:
    """Mean seconds per request of each stage that ran during the measured requests, and the rest.

    Attributes:
        requests: The measured requests (the denominator of every mean).
        client_mean: The client's mean latency of those requests.
        stages: Mean seconds per request of each stage observed, in pipeline order.
        per_request: Observations of each stage per request (1.0: once per request).
        server_mean: The middleware's mean time per request of ``route``, when one was asked for.
        outside_is: What the time outside the stages is made of, in words.
    """

    requests: int
    client_mean: float
    stages: Mapping[str, float]
    per_request: Mapping[str, float]
    server_mean: float | None = None
    outside_is: str = UPLOAD_OUTSIDE

    @property
    def in_stages(self) -> float:
        return sum(self.stages.values())

    @property
    def outside_stages(self) -> float:
        """What the client waited that no stage covers (HTTP, auth, consent, hops, ...)."""
        return self.client_mean - self.in_stages

    def to_dict(self) -> dict[str, Any]:
        def ms(seconds: float) -> float:
            return round(seconds * 1000, 1)

        out: dict[str, Any] = {
            "requests": self.requests,
            "client_mean_ms": ms(self.client_mean),
            "stages_ms": {k: ms(v) for k, v in self.stages.items()},
            "in_stages_ms": ms(self.in_stages),
            "outside_stages_ms": ms(self.outside_stages),
            "outside_stages_is": self.outside_is,
            "observations_per_request": {k: round(v, 2) for k, v in self.per_request.items()},
        }
        if self.server_mean is not None:
            out["server_request_mean_ms"] = ms(self.server_mean)
            out["outside_server_ms"] = ms(self.client_mean - self.server_mean)
        return out


def budget(
    before: Totals,
    after: Totals,
    *,
    requests: int,
    client_mean: float,
    route: str | None = None,
    outside_is: str = UPLOAD_OUTSIDE,
) -> Budget | None:
    """The stage budget of ``requests`` requests made between the scrapes ``before`` and ``after``;
    None when no stage was observed in between (a server without stage metrics)."""
    if requests <= 0:
        return None
    stages: dict[str, float] = {}
    per_request: dict[str, float] = {}
    for stage in sorted(after.stages, key=_order):
        seconds, count = after.stages[stage]
        seconds0, count0 = before.stages.get(stage, (0.0, 0.0))
        if count - count0 > 0:
            stages[stage] = (seconds - seconds0) / requests
            per_request[stage] = (count - count0) / requests
    if not stages:
        return None
    server_mean = None
    if route is not None and route in after.routes:
        seconds, count = after.routes[route]
        seconds0, count0 = before.routes.get(route, (0.0, 0.0))
        if count - count0 > 0:
            server_mean = (seconds - seconds0) / (count - count0)
    return Budget(requests, client_mean, stages, per_request, server_mean, outside_is)


def from_scrapes(
    scrapes: list[str],
    *,
    requests: int,
    client_mean: float,
    route: str | None = None,
    outside_is: str = UPLOAD_OUTSIDE,
) -> dict[str, Any] | None:
    """:func:`budget` of the first and last of ``scrapes`` as a results entry (None without two)."""
    if len(scrapes) < 2:
        return None
    found = budget(
        parse(scrapes[0]),
        parse(scrapes[-1]),
        requests=requests,
        client_mean=client_mean,
        route=route,
        outside_is=outside_is,
    )
    return found.to_dict() if found is not None else None
