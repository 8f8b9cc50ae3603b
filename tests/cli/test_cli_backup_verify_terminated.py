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

from _dxassist_cli import dxassist_env, plain_backup, run_dxassist

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


# Run as `dxassist backup verify BACKUP --key KEY --trust-any-origin --scratch SCRATCH`: SIGTERM arrives
# while the sealed backup is open (keys and record, decrypted) in the scratch folder.
_TERMINATED_WHILE_OPEN = """
import os, signal, sys
import inference._backup.verify as verify
from inference.cli import main

real = verify._verify_plain

def checking(dest, loaded, out, *, private):
    if private:  # the opened backup
        os.kill(os.getpid(), signal.SIGTERM)
    return real(dest, loaded, out, private=private)

verify._verify_plain = checking
sys.exit(main(["backup", "verify", sys.argv[1], "--key", sys.argv[2], "--trust-any-origin",
               "--scratch", sys.argv[3]]))
"""

# Run as `dxassist backup restore BACKUP HOME`: SIGTERM arrives while the copy is checked in its staging
# folder beside the home.
_TERMINATED_WHILE_STAGED = """
import os, signal, sys
import inference._backup.restore as restore
from inference.cli import main

real = restore._record_problems

def checking(root, manifest):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(root, manifest)

restore._record_problems = checking
sys.exit(main(["backup", "restore", sys.argv[1], sys.argv[2]]))
"""


def _run(script: str, home: Path, *args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_a_sealed_verify_stopped_with_sigterm_leaves_nothing_opened_in_its_scratch_folder(
    tmp_path: Path,
) -> None:
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    keygen = run_dxassist(home, "backup", "keygen", str(tmp_path / "custodian"))
    assert keygen.returncode == 0, keygen.stdout + keygen.stderr
    backup = tmp_path / "backup"
    public = tmp_path / "custodian.pub"
    made = run_dxassist(home, "backup", "create", str(backup), "--encrypt-to", str(public))
    assert made.returncode == 0, made.stdout + made.stderr
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    key = tmp_path / "custodian.key"
    stopped = _run(_TERMINATED_WHILE_OPEN, tmp_path / "elsewhere", backup, key, scratch)
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode in (130, -signal.SIGTERM), said
    assert "its content" in said and "intact" not in said, said  # stopped once it was open
    assert [p.relative_to(scratch) for p in scratch.rglob("*")] == [], said  # nothing opened left


def test_a_restore_stopped_with_sigterm_leaves_no_staged_copy_beside_the_home(tmp_path: Path) -> None:
    backup = plain_backup(tmp_path)
    home = tmp_path / "restored"

    stopped = _run(_TERMINATED_WHILE_STAGED, tmp_path / "elsewhere", backup, home)
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode in (130, -signal.SIGTERM), said
    assert not home.exists(), said
    assert not [p for p in tmp_path.iterdir() if "restoring" in p.name], said  # no staged copy left
