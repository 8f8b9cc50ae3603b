"""Per-stage timing of the imaging pipeline, labelled with the model that ran it.

``dxassist_stage_seconds{stage, model, version}``: histogram of the wall time of one stage for one study:
``decode`` (DICOM to pixels), ``preprocess`` (pixels to tensor), ``inference`` (waiting for and running
the model, micro-batching included), ``explain`` (display rendering and boxes), ``record_commit`` (filing
the result) and ``overlay`` (drawing a heatmap PNG when it is first asked for).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import Histogram

STAGES: Final = ("decode", "preprocess", "inference", "explain", "record_commit", "overlay")

STAGE_SECONDS = Histogram(
    "dxassist_stage_seconds",
    "Wall time of one stage of the imaging pipeline for one study, by stage and model version.",
    ("stage", "model", "version"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe_stage(stage: str, *, model: str, version: str, seconds: float) -> None:
    """Record one stage's duration (``stage`` one of :data:`STAGES`)."""
    if stage not in STAGES:
        raise ValueError(f"Unknown pipeline stage {stage!r}; one of {', '.join(STAGES)}.")
    STAGE_SECONDS.labels(stage=stage, model=model, version=version).observe(seconds)


@contextmanager
def timed(stage: str, *, model: str, version: str) -> Iterator[None]:
    """Time the ``with`` block as one ``stage`` (also when it raises: a slow failure is still slow)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        observe_stage(stage, model=model, version=version, seconds=time.perf_counter() - start)
