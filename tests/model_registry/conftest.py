"""Fixtures for the model registry tests: a real MLflow SQLite store and tiny ONNX models.

Creating an MLflow SQLite store runs its migrations (several seconds), so one migrated empty store is
made per session and copied for each module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _registry_testkit import Store

import model_registry


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its migrations already run."""
    path = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not path.exists():
        model_registry.RegistryClient(f"sqlite:///{path}").list_models()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> Store:
    """One MLflow store shared by a test module (tests use distinct model names)."""
    return Store(tmp_path_factory.mktemp("registry"), migrated_store)


@pytest.fixture
def unreachable_client(monkeypatch: pytest.MonkeyPatch) -> Callable[[], model_registry.RegistryClient]:
    """A client pointed at a closed loopback port, with MLflow's HTTP retries switched off."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return lambda: model_registry.RegistryClient("http://127.0.0.1:9")


@pytest.fixture(autouse=True)
def _no_mlruns_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run every test from an empty folder so stray ``./mlruns`` writes are caught."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert not (cwd / "mlruns").exists(), "MLflow wrote ./mlruns into the working directory"
    assert os.listdir(cwd) == [], f"unexpected files in the working directory: {os.listdir(cwd)}"
