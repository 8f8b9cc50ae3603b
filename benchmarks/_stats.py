"""Timing: warm-up, then repeats bounded by count and wall time; median and p95 of the samples."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Samples of one measurement, in seconds.

    Attributes:
        samples: One wall-clock duration per repeat (warm-up excluded).
        extra: Anything else worth recording with it (request counts, errors, shapes).
    """

    samples: tuple[float, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return float(np.median(self.samples)) if self.samples else float("nan")

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples, 95)) if self.samples else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median_ms": round(self.median * 1000, 3),
            "p95_ms": round(self.p95 * 1000, 3),
            "mean_ms": round(self.mean * 1000, 3) if self.samples else None,
            "min_ms": round(min(self.samples) * 1000, 3) if self.samples else None,
            **self.extra,
        }


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 2,
    repeats: int = 20,
    max_seconds: float = 10.0,
    min_repeats: int = 3,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then up to ``repeats`` times (stopping after ``max_seconds``
    once ``min_repeats`` are taken)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    started = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if i + 1 >= min_repeats and time.perf_counter() - started > max_seconds:
            break
    return Timing(tuple(samples))


def percentile(values: Sequence[float], q: float) -> float:
    """``q``-th percentile of ``values`` (NaN when empty)."""
    return float(np.percentile(values, q)) if len(values) else float("nan")
