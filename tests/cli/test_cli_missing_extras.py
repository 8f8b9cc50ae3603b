"""A PostgreSQL URL without the ``postgres`` extra: one line naming the extra, never a traceback.

The missing driver is simulated in a real ``dxassist`` subprocess: a ``sitecustomize`` on its path makes
``import psycopg`` (and ``psycopg2``) fail, as they do where the extra is not installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, REPO, dxassist_env


def _run(tmp_path: Path, extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    blocker = tmp_path / "no-psycopg"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['psycopg'] = None  # as if not installed\nsys.modules['psycopg2'] = None\n"
    )
    env = dxassist_env(tmp_path / "home") | extra_env
    env["PYTHONPATH"] = os.pathsep.join(
        [str(blocker), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [str(DXASSIST), *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "url", "expected"),
    [
        (
            "DXASSIST_DATABASE_URL",
            "postgresql+psycopg://dxassist@127.0.0.1:9/record",
            "dxassist: DXASSIST_DATABASE_URL is a PostgreSQL URL but the 'postgres' extra is not installed "
            "here (missing: psycopg): pip install 'dxassist[postgres]'.",
        ),
        (
            "MLFLOW_TRACKING_URI",
            "postgresql://mlflow@127.0.0.1:9/mlflow",
            "dxassist: MLFLOW_TRACKING_URI is a PostgreSQL URL but the 'postgres' extra is not installed "
            "here (missing: psycopg): pip install 'dxassist[postgres]'.",
        ),
        (
            "MLFLOW_TRACKING_URI",
            "postgresql+psycopg2://mlflow@127.0.0.1:9/mlflow",
            "dxassist: MLFLOW_TRACKING_URI names the PostgreSQL driver 'psycopg2', not installed here; "
            "dxassist's 'postgres' extra installs psycopg 3: pip install 'dxassist[postgres]' and write the "
            "URL as postgresql+psycopg://...",
        ),
    ],
)
def test_a_postgres_url_without_the_extra_is_one_line(
    tmp_path: Path, variable: str, url: str, expected: str
) -> None:
    done = _run(tmp_path, {variable: url}, "registry", "list")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "home" / "record.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("command", [["serve", "--port", "9"], ["listen", "--port", "9"]])
def test_cuda_without_the_gpu_extra_is_one_line(tmp_path: Path, command: list[str]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.fail("This machine's ONNX Runtime offers CUDA; the test needs the CPU-only package.")
    done = _run(tmp_path, {"DXASSIST_EXECUTION_PROVIDER": "cuda"}, *command)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dxassist: DXASSIST_EXECUTION_PROVIDER is 'cuda' but ONNX Runtime offers no")
    assert "install the 'gpu' extra" in lines[0]
