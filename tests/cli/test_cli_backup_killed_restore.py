"""`dxassist backup restore` killed with `kill -9` while it copies: the target home is left as it was
(nothing, or an empty folder), never half restored; what the killed restore staged beside it is removed
by the next restore, which restores the whole backup.

Before, files were copied straight into the new home: a restore killed (or the machine stopped) while it
copied a large model left a home with its keys and audit anchor but no record, which `dxassist serve`
would start on as a new installation. Normal failures and Ctrl-C already removed what was copied.

The real console script in a subprocess, killed with SIGKILL as soon as the large file it copies
appears (its copy and hash take far longer than noticing it), on a backup made by the console script.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env, run_dxassist

_LARGE = 160 << 20  # long enough to copy and hash that the kill lands while it is copied


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain backup of a home with a record (an audit entry), keys and a large model file."""
    root = tmp_path_factory.mktemp("killed-restore")
    home = root / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    (home / "models").mkdir(exist_ok=True)
    with open(home / "models" / "large.onnx", "wb") as handle:
        for i in range(_LARGE >> 20):
            handle.write(bytes([i % 251]) * (1 << 20))
    made = run_dxassist(home, "backup", "create", str(root / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr
    return root / "backup"


def _kill_while_copying(backup: Path, home: Path) -> None:
    """Start a restore of ``backup`` into ``home`` and kill it (-9) once the large file's copy appears."""
    restore = subprocess.Popen(
        [str(DXASSIST), "backup", "restore", str(backup), str(home)],
        env=dxassist_env(home.parent / "elsewhere"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while restore.poll() is None:
            if any(home.parent.rglob("large.onnx")):
                restore.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        restore.kill()
        restore.wait(timeout=60)
    assert restore.returncode == -signal.SIGKILL, "the restore ended before the large file was copied"


@pytest.mark.parametrize("existing", [False, True], ids=["new-home", "empty-home"])
def test_a_restore_killed_while_it_copies_leaves_no_half_restored_home(
    backup: Path, tmp_path: Path, existing: bool
) -> None:
    home = tmp_path / "restored"
    if existing:
        home.mkdir()
    before = {p.name for p in tmp_path.iterdir() if p.name != "restored"}
    _kill_while_copying(backup, home)

    # The home is as before: no keys without a record, no audit anchor of a record that is not there.
    if existing:
        assert [p.name for p in home.iterdir()] == []
    else:
        assert not home.exists()
    left = {p.name for p in tmp_path.iterdir()} - before - {"restored", "elsewhere"}
    assert left and all(name.startswith(".") for name in left), left  # hidden, beside the home

    done = run_dxassist(home, "backup", "restore", str(backup), str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "models" / "large.onnx").stat().st_size == _LARGE
    assert {p.name for p in tmp_path.iterdir()} - before - {"elsewhere"} == {"restored"}
    assert not [p.name for p in home.iterdir() if p.name.startswith(".")]
    audited = run_dxassist(home, "audit", "verify")
    assert audited.returncode == 0, audited.stdout + audited.stderr
