"""A copied DXASSIST_HOME trains and registers into itself; the original folder is never touched.

Real training (`dxassist train triage --register`, a YAML config at the test profile's size), a real
MLflow store, the console script in subprocesses: what an ML engineer does after `cp -a var var2`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env

from model_registry import ModelCache, RegistryClient

TINY_TRIAGE = "n_train: 4000\nn_val: 2000\nn_test: 3000\nepochs: 3\nn_boot: 200\n"


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    out: dict[str, tuple[int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            out[str(path.relative_to(root))] = (
                stat.st_size,
                stat.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return out


def _dxassist(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_copied_home_trains_and_registers_into_itself(tmp_path: Path) -> None:
    config = tmp_path / "tiny-triage.yaml"
    config.write_text(TINY_TRIAGE, encoding="utf-8")
    original = tmp_path / "A"
    _dxassist(original, "train", "triage", "--config", str(config), "--register")
    _dxassist(original, "registry", "promote", "vitals-triage", "1")

    copy = tmp_path / "B"
    shutil.copytree(original, copy)
    moved = tmp_path / "A-moved"
    original.rename(moved)  # anything still pointing at A's path would recreate it or fail to read
    before = _tree(moved)

    _dxassist(copy, "train", "triage", "--config", str(config), "--register")

    assert not original.exists(), "the copied home wrote into the folder it was copied from"
    assert _tree(moved) == before
    client = RegistryClient(f"sqlite:///{copy / 'mlflow.db'}", copy / "mlartifacts")
    assert client.aliases("vitals-triage") == {"champion": "1", "challenger": "2"}
    # The copy's registry serves both versions from its own files: the champion trained before the
    # copy and the challenger trained after it.
    cache = ModelCache(copy / "models")
    for alias, version in (("champion", "1"), ("challenger", "2")):
        local = cache.fetch("vitals-triage", alias, client=client)
        assert (local.version, local.offline) == (version, False)
        assert local.path.is_relative_to(copy)
    run_dirs = [p for p in (copy / "mlartifacts" / "vitals-triage").iterdir() if len(p.name) == 32]
    assert len(run_dirs) == 2

    # The run logged one point per epoch: the training curves.
    for figure in ("train_loss", "val_loss", "val_auroc"):
        curve = client.training_curve("vitals-triage", "2", figure)
        assert [step for step, _ in curve] == [1, 2, 3], figure
    # The report reads the challenger's run: its figures are the run's figures.
    logged = client.run_metrics("vitals-triage", "2")
    report = _dxassist(copy, "registry", "report", "vitals-triage", "--alias", "challenger").stdout
    auroc = logged["test_auroc"]
    low, high = logged["test_auroc_ci_low"], logged["test_auroc_ci_high"]
    assert f"| model, all test rows | {auroc:.3f} ({low:.3f}–{high:.3f}) |" in report
    assert f"({int(logged['test_n']):,} test observations)".replace(",", " ") in report
