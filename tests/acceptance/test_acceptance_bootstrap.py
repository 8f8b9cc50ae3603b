"""What an ML engineer sees after `dxassist bootstrap` on an empty home (issue: training + registry).

These tests read the MLflow store the way an outside acceptance check does (MLflow's own client), so
they check what was really logged, not what our wrappers say was logged.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env

import model_registry  # noqa: F401  (telemetry off before mlflow is imported)

# The first test to ask for `bootstrapped_home` pays for a whole quick bootstrap (minutes on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(2700)]

FINDINGS = ("nodule", "consolidation", "pleural_effusion", "pneumothorax", "cardiomegaly")


def _client(home: Path):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}", registry_uri=f"sqlite:///{home / 'mlflow.db'}"
    )


def _champion_run_metrics(home: Path, name: str) -> tuple[dict[str, float], object]:
    client = _client(home)
    version = client.get_model_version_by_alias(name, "champion")
    run = client.get_run(version.run_id)
    return dict(run.data.metrics), version


def test_both_champions_are_registered_with_artifacts_and_sha256(bootstrapped_home: Path) -> None:
    client = _client(bootstrapped_home)
    for name in ("cxr-findings", "vitals-triage"):
        version = client.get_model_version_by_alias(name, "champion")
        assert len(version.tags["sha256"]) == 64
        assert version.tags["parity_passed"].lower() == "true"
        cached = bootstrapped_home / "models" / name / str(version.version) / "model.onnx"
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == version.tags["sha256"]
        run_artifacts = {a.path for a in client.list_artifacts(version.run_id)}
        assert "model_card.md" in run_artifacts, run_artifacts
        assert any(p.endswith(".png") for p in run_artifacts) or any("plots" in p for p in run_artifacts), (
            run_artifacts
        )


def test_imaging_quick_profile_meets_its_targets_on_the_synthetic_test_split(bootstrapped_home: Path) -> None:
    metrics, _ = _champion_run_metrics(bootstrapped_home, "cxr-findings")
    # Issue 10's demo-model targets (measured 0.984 macro, nodule 0.935 the lowest, on 2 shared cores).
    for finding in FINDINGS:
        assert metrics[f"test_auroc_{finding}"] >= 0.85, (finding, metrics)
    assert metrics["test_macro_auroc"] >= 0.95, metrics
    assert metrics["test_pointing_game"] >= 0.80, metrics
    assert 0.0 <= metrics["test_ece"] <= 1.0
    # The OOD guard, as logged in MLflow: the refusal set is told apart from the test split (measured
    # 0.9997 AUROC, 99.5% refused) and ordinary phantoms, acquisition variation included, pass (measured
    # 99.4% of the test split).
    assert metrics["ood_auroc"] >= 0.97, metrics
    assert metrics["ood_refusal_rate"] >= 0.9, metrics
    assert metrics["ood_test_pass_rate"] >= 0.98, metrics
    # Lateral phantoms tagged as frontal (PA, frontal orientation): the distance to the frontal images
    # alone let 71 of 100 through; the lateral contrast term refuses them (measured 24 of 24).
    assert metrics["ood_refusal_rate_lateral"] >= 0.9, metrics


def test_triage_model_beats_news2_on_the_same_split(bootstrapped_home: Path) -> None:
    metrics, _ = _champion_run_metrics(bootstrapped_home, "vitals-triage")
    # Compared on the same rows only: where NEWS2 is complete, and with signs hidden at random (NEWS2's
    # known part). The model's AUROC on every row is logged too, but it is not comparable with NEWS2's.
    assert metrics["test_auroc_news2_subset"] > metrics["test_news2_auroc"], metrics
    assert metrics["test_masked_auroc"] > metrics["test_masked_news2_auroc"], metrics
    assert 0.0 <= metrics["test_ece"] <= 1.0
    # Plausible shapes and true explanations, measured on the exported model the gate promoted.
    assert metrics["shape_monotonicity_violation"] <= 1e-5 and metrics["missing_contribution_max"] == 0.0


def test_registry_list_shows_the_champions_and_a_second_bootstrap_trains_nothing(
    bootstrapped_home: Path,
) -> None:
    env = dxassist_env(bootstrapped_home)
    listing = subprocess.run(
        [str(DXASSIST), "registry", "list"], env=env, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    for name in ("cxr-findings", "vitals-triage"):
        assert name in listing
    assert "champion" in listing

    before = {p: p.stat().st_mtime_ns for p in (bootstrapped_home / "models").rglob("model.onnx")}
    again = subprocess.run(
        [str(DXASSIST), "bootstrap", "--profile", "quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    for name in ("cxr-findings", "vitals-triage"):
        assert f"{name}: champion is version 1; nothing to train." in again.stdout, again.stdout
    after = {p: p.stat().st_mtime_ns for p in (bootstrapped_home / "models").rglob("model.onnx")}
    assert after == before
    client = _client(bootstrapped_home)
    for name in ("cxr-findings", "vitals-triage"):
        assert len(client.search_model_versions(f"name='{name}'")) == 1
