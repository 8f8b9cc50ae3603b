"""`dxassist backup verify --key` on a custodian's machine, which has no dxassist installation: it reads
the backup, the custodian key and the server's signer key, and makes nothing else. Before, it made a
`DXASSIST_HOME` (`./var` in whatever folder it was run from) to open the backup in, and left it there.
The sealed content is opened where the custodian says (`--scratch DIR`), or in an existing home.

The real console script, run from an empty folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from _dxassist_cli import DXASSIST, dxassist_env


def _dxassist(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _at_the_custodians(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dxassist`` with no ``DXASSIST_HOME`` (its default, ``./var``, relative to ``cwd``)."""
    env = {k: v for k, v in dxassist_env(cwd).items() if k != "DXASSIST_HOME"}
    return subprocess.run(
        [str(DXASSIST), *args], env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_verify_with_the_custodian_key_creates_nothing_but_what_it_is_told(tmp_path: Path) -> None:
    home = tmp_path / "server"
    home.mkdir()
    issued = _dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    custodian = tmp_path / "custodian"
    custodian.mkdir()
    assert _dxassist(home, "backup", "keygen", str(custodian / "office")).returncode == 0
    backup = tmp_path / "backup"
    made = _dxassist(home, "backup", "create", str(backup), "--encrypt-to", str(custodian / "office.pub"))
    assert made.returncode == 0, made.stdout + made.stderr
    exported = _dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    (custodian / "server.pub").write_text(exported.stdout, encoding="utf-8")
    before = {p: _everything_under(p) for p in (backup, custodian)}

    desk = tmp_path / "desk"
    desk.mkdir()
    checked = ("--key", str(custodian / "office.key"), "--signer", str(custodian / "server.pub"))
    # No installation here and no place named: refused, saying how; nothing made.
    refused = _at_the_custodians(desk, "backup", "verify", str(backup), *checked)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--scratch" in refused.stderr and "Traceback" not in refused.stderr
    assert _everything_under(desk) == []

    # Opened where the custodian says, checked in full, and gone after.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    verified = _at_the_custodians(desk, "backup", "verify", str(backup), *checked, "--scratch", str(scratch))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "backup intact" in verified.stdout and "audit trail intact" in verified.stdout
    assert _everything_under(desk) == [] and _everything_under(scratch) == []
    # Without the key, as written: nothing made either.
    as_written = _at_the_custodians(
        desk, "backup", "verify", str(backup), "--signer", str(custodian / "server.pub")
    )
    assert as_written.returncode == 0, as_written.stdout + as_written.stderr
    assert _everything_under(desk) == []
    # What it read is as it was.
    assert {p: _everything_under(p) for p in (backup, custodian)} == before
