"""`backup create` copies the record (patient data) into DEST (a sealed backup: into a plain staging folder
of the home first). Stopped with SIGTERM (a scheduler's timeout, `timeout 1h dxassist backup create`, a
service stop) or Ctrl-C mid-copy, it removes what it made and says nothing was kept: its partial folder was
left on the backup medium, unlabelled, and a sealed backup's plain copy in the home.

The real command in a subprocess, which sends itself SIGTERM once the record is copied (the copy takes
milliseconds: the signal is sent by the process itself, at that point).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _dxassist_cli import dxassist_env, run_dxassist

from inference._backup.files import STAGING

# Run as `dxassist backup create DEST [--encrypt-to PUB]`: SIGTERM arrives once the record is copied.
_TERMINATED_WHILE_COPYING = """
import os, signal, sys
import inference._backup.create as create
from inference.cli import main

real = create._registry_part

def copying(settings, partial, plan):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(settings, partial, plan)

create._registry_part = copying
sys.exit(main(["backup", "create", *sys.argv[1:]]))
"""


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@pytest.mark.parametrize("made_empty", [False, True], ids=["new-dest", "operator-made-dest"])
def test_a_create_stopped_with_sigterm_leaves_no_copy_of_the_record(
    tmp_path: Path, sealed: bool, made_empty: bool
) -> None:
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    args = [str(tmp_path / "backup")]
    if made_empty:
        (tmp_path / "backup").mkdir()
    if sealed:
        keygen = run_dxassist(home, "backup", "keygen", str(tmp_path / "custodian"))
        assert keygen.returncode == 0, keygen.stdout + keygen.stderr
        args += ["--encrypt-to", str(tmp_path / "custodian.pub")]

    stopped = subprocess.run(
        [sys.executable, "-c", _TERMINATED_WHILE_COPYING, *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode == 130, said
    assert "nothing was kept" in said, said
    if made_empty:
        assert list((tmp_path / "backup").iterdir()) == [], said  # the operator's folder stays, emptied
    else:
        assert not (tmp_path / "backup").exists(), said
    assert not list(home.glob(f"{STAGING}*")), said  # no plain staging copy left in the home
