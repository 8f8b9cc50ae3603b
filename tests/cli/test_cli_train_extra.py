"""A server-only install (no ``train`` extra) says in one line what to install, never a traceback.

The missing extra is simulated in a real ``dxassist`` subprocess: a ``sitecustomize`` on its path makes
``import torch`` fail, as it does where PyTorch is not installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, REPO, dxassist_env

HINT = "pip install 'dxassist[train]'"


def _run(tmp_path: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    blocker = tmp_path / "no-torch"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['torch'] = None  # as if not installed\n"
    )
    env = dxassist_env(home)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(blocker), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [str(DXASSIST), *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.parametrize("kind", ["imaging", "triage"])
def test_train_without_torch_is_one_line_naming_the_extra(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    done = _run(tmp_path, home, "train", kind)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert HINT in lines[0] and "torch" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (home / "runs").exists()  # refused before a run folder was made


def test_bootstrap_without_torch_ends_in_the_same_line(tmp_path: Path) -> None:
    done = _run(tmp_path, tmp_path / "home", "bootstrap")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "dxassist: Training needs the 'train' extra, not installed here (missing: torch): "
        "pip install 'dxassist[train]' (in a checkout: pip install -e '.[train]'; PyTorch CPU is enough)."
    ]
