"""The benchmark's server never answers 429 to its own run: the limiter stays on, far above the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._server import server_env
from inference.config import Settings


def test_the_benchmark_server_limits_far_above_what_a_run_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = server_env(tmp_path / "home")
    for key in ("DXASSIST_RATE_LIMIT_PER_MINUTE", "DXASSIST_RATE_LIMIT_BURST", "DXASSIST_HOME"):
        monkeypatch.setenv(key, env[key])
    limits = Settings().server
    pictures = 200 * 2 + 40  # one run's heatmap GETs (each twice) and display images, from one reader
    assert limits.rate_limit_per_minute > 0  # the limiter still runs, so its cost is in the figures
    assert limits.rate_limit_burst >= pictures and limits.rate_limit_per_minute >= 60 * pictures
