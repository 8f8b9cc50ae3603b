"""Helpers for the command-line tests: a DXASSIST_HOME holding a copied, migrated MLflow store.

A unique module name (test folders have no ``__init__.py``; ``conftest`` imports would be ambiguous).
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import model_registry
from inference.config import Settings
from inference.record import Record
from inference.vocabulary import FINDINGS as FINDINGS  # re-exported for the CLI tests
from model_registry import RegisteredVersion, RegistryClient


def make_home(root: Path, template: Path) -> Path:
    """A DXASSIST_HOME whose ``mlflow.db`` is a copy of the migrated template."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, root / "mlflow.db")
    return root


def registry_for(home: Path) -> RegistryClient:
    """The client the CLI builds from default settings for ``home``."""
    return RegistryClient(f"sqlite:///{home / 'mlflow.db'}", home / "mlartifacts")


def register(
    client: RegistryClient,
    name: str,
    onnx_path: Path,
    figures: dict[str, float],
    *,
    dataset_digest: str | None = None,
) -> RegisteredVersion:
    """Register ``onnx_path`` as a new challenger version with the given gate figures (and the content
    digest of its data set, ``dataset_sha256``, when given)."""
    return client.log_and_register(
        name=name,
        onnx_path=onnx_path,
        params={"profile": "test"},
        metrics=figures,
        artifacts=None,
        model_card=f"# {name} (tiny test model)\n\nSynthetic; not for clinical use.\n",
        dataset="tiny-synthetic (tests)",
        parity_passed=True,
        parity_max_abs_diff=0.0,
        sha256=model_registry.sha256_file(onnx_path),
        git_commit="feedbeef",
        dataset_digest=dataset_digest,
    )


def audit_entries(home: Path, subject: str, actions: Collection[str]) -> list[dict[str, Any]]:
    """The audit entries of ``subject`` with one of ``actions`` in ``home``'s record, oldest first."""
    record = Record(Settings(home=home).record_url)
    try:
        _total, found = record.audit.search(agent=subject, limit=500)
    finally:
        record.close()
    return [e for e in reversed(found) if e["action"] in actions]
