"""`backup verify` of a plain backup copies its record (patient data) into a private folder of the
temporary folder, to check the audit trail on the bytes it hashed. Stopped with SIGTERM (a scheduler's
timeout, `timeout 1h dxassist backup verify`, a service stop) while that copy exists, it removes it
before it ends: the copy was left in /tmp until the next `backup verify`, perhaps never.

The real command in a subprocess, which sends itself SIGTERM once the copy is made (the check takes
milliseconds: the signal is sent by the process itself, at that point).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from _dxassist_cli import dxassist_env, plain_backup

# Run as `dxassist backup verify BACKUP`: SIGTERM arrives while the record's private copy exists.
_TERMINATED_WHILE_CHECKING = """
import os, signal, sys
import inference._backup.verify as verify
from inference.cli import main

real = verify._record_problems

def checking(root, manifest):
    if root.name.startswith(verify.VERIFYING):  # the private copy
        os.kill(os.getpid(), signal.SIGTERM)
    return real(root, manifest)

verify._record_problems = checking
sys.exit(main(["backup", "verify", sys.argv[1]]))
"""


def test_a_verify_stopped_with_sigterm_leaves_no_copy_of_the_record_in_the_temporary_folder(
    tmp_path: Path,
) -> None:
    backup = plain_backup(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dxassist_env(tmp_path / "elsewhere") | {"TMPDIR": str(scratch)}
    stopped = subprocess.run(
        [sys.executable, "-c", _TERMINATED_WHILE_CHECKING, str(backup)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode in (130, -signal.SIGTERM), said  # stopped, not a verdict on the backup
    assert "intact" not in said and "BROKEN" not in said, said
    assert list(scratch.iterdir()) == [], said  # no copy of the record left behind
