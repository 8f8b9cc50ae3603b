"""`dxassist registry report` prints the README's model tables from the runs the registry holds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from _cli_home import FINDINGS, make_home, register, registry_for
from _dxassist_cli import DXASSIST, dxassist_env
from tiny_models import build_imaging_onnx, build_triage_onnx

from inference.vocabulary import finding_display
from model_registry import RegistryClient


def _imaging_figures() -> dict[str, float]:
    figures: dict[str, float] = {"test_n": 360.0, "val_macro_auroc": 0.93}
    for i, finding in enumerate(FINDINGS):
        figures[f"val_auroc_{finding}"] = 0.9
        figures[f"test_auroc_{finding}"] = 0.7512 + i / 20
        figures[f"test_auroc_{finding}_ci_low"] = 0.6981 + i / 20
        figures[f"test_auroc_{finding}_ci_high"] = 0.8034 + i / 40
        figures[f"test_pointing_game_{finding}"] = 0.341 + i / 10
    figures |= {
        "test_macro_auroc": 0.9361,
        "test_pointing_game": 0.8213,
        "test_pointing_game_tolerant": 0.9612,
        "test_ece": 0.0421,
        "test_ece_uncalibrated": 0.0822,
        "ood_auroc": 0.99971,
        "ood_eval_n": 216.0,
        "ood_refusal_rate": 0.9907,
        "ood_test_pass_rate": 0.9944,
        "ood_refusal_rate_noise": 1.0,
        "ood_refusal_rate_rotated_chest": 0.92,
    }
    return figures


def _triage_figures() -> dict[str, float]:
    figures = {"val_auroc": 0.83, "test_n": 10000.0, "test_news2_n": 7713.0, "test_masked_rate": 0.3}
    for key, value in (
        ("test_auroc", 0.8243),
        ("test_auroc_news2_subset", 0.8401),
        ("test_news2_auroc", 0.8213),
        ("test_masked_auroc", 0.7891),
        ("test_masked_news2_auroc", 0.7764),
    ):
        figures |= {key: value, f"{key}_ci_low": value - 0.0161, f"{key}_ci_high": value + 0.0162}
    return figures | {
        "test_ece": 0.0101,
        "test_masked_ece": 0.0271,
        "test_sensitivity": 0.8,
        "test_specificity": 0.7,
    }


@pytest.fixture(scope="module")
def report_home(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> Path:
    """Champions whose runs carry the figures of a real training run (values chosen here)."""
    root = make_home(tmp_path_factory.mktemp("report-home"), migrated_store)
    client = registry_for(root)
    register(
        client, "cxr-findings", build_imaging_onnx(root / "exports" / "cxr.onnx", seed=1), _imaging_figures()
    )
    client.promote("cxr-findings", 1)
    register(client, "vitals-triage", build_triage_onnx(root / "exports" / "triage.onnx"), _triage_figures())
    client.promote("vitals-triage", 1)
    return root


def _report(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), "registry", "report", *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _logged(home: Path, name: str) -> dict[str, float]:
    """The run's metrics as MLflow itself returns them (not through the code under test)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    version = client.get_model_version_by_alias(name, "champion")
    return dict(client.get_run(version.run_id).data.metrics)


def _ci(m: dict[str, float], key: str) -> str:
    return f"{m[key]:.3f} ({m[key + '_ci_low']:.3f}–{m[key + '_ci_high']:.3f})"


def test_report_prints_the_registered_runs_figures(report_home: Path) -> None:
    done = _report(report_home)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    m = _logged(report_home, "cxr-findings")
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "| `cxr-findings` (360 test studies) | AUROC (95% CI) | pointing game |" in out
    for finding in FINDINGS:
        row = rows[finding_display(finding)]
        assert row == f"| {finding_display(finding)} | {_ci(m, f'test_auroc_{finding}')} | " + (
            f"{m[f'test_pointing_game_{finding}']:.2f} |"
        )
    assert rows["**macro**"] == (
        f"| **macro** | **{m['test_macro_auroc']:.3f}** | **{m['test_pointing_game']:.2f}** "
        f"({m['test_pointing_game_tolerant']:.2f} within half a CAM cell) |"
    )
    assert (
        f"ECE {m['test_ece']:.3f} after temperature scaling ({m['test_ece_uncalibrated']:.3f} before)" in out
    )
    assert f"AUROC {m['ood_auroc']:.4f} between the test split" in out
    assert "(every kind 100% but rotated chest 92.0%)" in out

    t = _logged(report_home, "vitals-triage")
    assert f"| model, all test rows | {_ci(t, 'test_auroc')} |" in out
    assert f"| model, rows where NEWS2 is complete (7 713) | {_ci(t, 'test_auroc_news2_subset')} |" in out
    assert f"| NEWS2, same rows | {_ci(t, 'test_news2_auroc')} |" in out
    assert f"| model, 30% of signs hidden at random | {_ci(t, 'test_masked_auroc')} |" in out
    assert f"| NEWS2's measured part, same rows | {_ci(t, 'test_masked_news2_auroc')} |" in out
    assert f"ECE {t['test_ece']:.3f} ({t['test_masked_ece']:.3f} with signs hidden)" in out
    # Every table names the run it was read from, so a reader can trace a figure back.
    runs = re.findall(r"run `([0-9a-f]{32})`", out)
    versions = {
        n: RegistryClient(f"sqlite:///{report_home / 'mlflow.db'}").get_version(n, 1)
        for n in ("cxr-findings", "vitals-triage")
    }
    assert runs == [versions["cxr-findings"].run_id, versions["vitals-triage"].run_id]


def test_report_of_a_model_without_that_alias_is_one_line(report_home: Path) -> None:
    done = _report(report_home, "vitals-triage", "--alias", "challenger")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "dxassist: vitals-triage has no 'challenger' version; run `dxassist bootstrap` or name another alias."
    ]
