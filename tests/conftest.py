"""Fixtures shared by the whole suite.

The telemetry switches are set before anything imports ONNX Runtime or MLflow: no test sends traffic
off the machine. ``bootstrapped_home`` runs the real ``dxassist bootstrap --profile quick`` once per
session, so the acceptance tests see what a user sees after ``make run``.
"""

from __future__ import annotations

import os

for _key, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
):
    os.environ[_key] = _value

import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from _dxassist_cli import DXASSIST, dxassist_env  # noqa: E402


@pytest.fixture(scope="session")
def bootstrapped_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DXASSIST_HOME after ``dxassist bootstrap --profile quick``: both champions trained and registered."""
    home = tmp_path_factory.mktemp("bootstrapped-home")
    proc = subprocess.run(
        [str(DXASSIST), "bootstrap", "--profile", "quick"],
        env=dxassist_env(home),
        cwd=tmp_path_factory.mktemp("cwd"),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    (home / "bootstrap.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, f"bootstrap failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return home
