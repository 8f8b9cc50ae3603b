"""Fixtures for the ``dxassist`` command-line tests: a DXASSIST_HOME with a real MLflow store.

The store starts as a copy of one migrated empty MLflow database (migrations take seconds) and is
filled through ``model_registry`` with the tiny ONNX models of ``tests/tiny_models.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_home import FINDINGS, make_home, register, registry_for
from tiny_models import build_imaging_onnx, build_triage_onnx

from model_registry import RegistryClient


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its migrations already run (shared with other test folders)."""
    path = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not path.exists():
        RegistryClient(f"sqlite:///{path}").list_models()
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> Path:
    """A home where both served models have champion version 1.

    ``cxr-findings`` also has version 2 (a 0.004 AUROC drop: passes the gate) and version 3 (a 0.05
    drop on pneumothorax: refused).
    """
    root = make_home(tmp_path_factory.mktemp("home"), migrated_store)
    exports = root / "exports"
    client = registry_for(root)
    for version, pneumothorax in ((1, 0.90), (2, 0.896), (3, 0.85)):
        onnx_path = build_imaging_onnx(exports / f"cxr-{version}.onnx", seed=version)
        figures = {f"val_auroc_{f}": 0.90 for f in FINDINGS} | {"val_auroc_pneumothorax": pneumothorax}
        register(client, "cxr-findings", onnx_path, {**figures, "val_macro_auroc": 0.9})
    client.promote("cxr-findings", 1)
    register(client, "vitals-triage", build_triage_onnx(exports / "triage.onnx"), {"val_auroc": 0.8})
    client.promote("vitals-triage", 1)
    return root


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Default settings only (no tracking URI from the developer's shell), run from an empty folder."""
    for key in ("MLFLOW_TRACKING_URI", "DXASSIST_MLFLOW_TRACKING_URI", "DXASSIST_ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert not (cwd / "mlruns").exists(), "MLflow wrote ./mlruns into the working directory"
