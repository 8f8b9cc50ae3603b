"""Fixtures of the API tests: a DXASSIST_HOME in tmp, tiny models seeded in its cache, a running app."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tiny_models

from inference.api import create_app
from inference.config import Settings
from inference.security import issue_token

with warnings.catch_warnings():
    # starlette >= 1.x warns (as a UserWarning) that it prefers httpx2 over httpx; the dev extra pins httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@dataclass(frozen=True)
class Env:
    """One server home: its settings and a way to make bearer headers."""

    home: Path
    settings: Settings

    def headers(
        self, role: str, *, facility: str | None = None, subject: str | None = None
    ) -> dict[str, str]:
        """``Authorization`` header for a fresh token of ``role``."""
        token = issue_token(self.settings, subject=subject or f"test-{role}", role=role, facility=facility)
        return {"Authorization": f"Bearer {token}"}


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a test server: SQLite record and model cache under ``home``, no MLflow, no watcher."""
    values: dict[str, object] = {
        "home": home,
        "database_url": None,
        "mlflow_tracking_uri": None,
        "model_watch_seconds": 0,
        "preprocess_workers": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def new_study_uid() -> str:
    """A fresh, valid study UID (the 2.25 UUID-derived form)."""
    return f"2.25.{uuid.uuid4().int}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A seeded home shared by the tests of one module (each test uses its own studies and patients)."""
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        tiny_models.seed_both(settings.model_cache, home / "build")
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    """The app of ``env`` with its lifespan running."""
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client
