"""Fixtures of the runtime tests: a seeded model cache and settings that keep tests fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models

from inference.config import Settings


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A model cache holding both tiny models as ``champion`` version 1."""
    return tiny_models.seed_both(tmp_path / "models", tmp_path / "build")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """CPU, one thread per op, no watcher (tests call ``refresh`` or set their own interval)."""
    return Settings(
        home=tmp_path / "home",
        execution_provider="cpu",
        intra_op_threads=1,
        inter_op_threads=1,
        batch_max_size=8,
        batch_max_wait_ms=20,
        model_watch_seconds=0,
    )
