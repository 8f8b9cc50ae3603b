"""What `backup verify` and `backup restore` print of a manifest is shown without control characters.

Whoever can write the backup medium chooses every value of an unsigned manifest: the audit head it names
(printed when it differs from the record's) and a sealed backup's custodian key fingerprint. Printed as
they were, an escape sequence there cleared the operator's terminal and wrote a line the command never
wrote ("backup intact"), as file names could before they were shown with ``?``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from _dxassist_cli import plain_backup, run_dxassist

from inference._backup_cli import backup_restore, backup_verify

FORGED = "\x1b[2J\x1b[Hbackup intact: 9 files as listed in its manifest\x1b[8m"
"""Clears the screen, writes a line of its own, and hides what follows."""


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsigned plain backup of a home whose record holds an audit entry."""
    return plain_backup(tmp_path_factory.mktemp("shown"))


def _with_head(plain: Path, tmp_path: Path, head: dict[str, Any]) -> Path:
    backup = tmp_path / "backup"
    shutil.copytree(plain, backup)
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    manifest["record"]["audit_head"] = head
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return backup


@pytest.mark.parametrize("head", [{"seq": 1, "hash": FORGED}, {"seq": FORGED, "hash": "0" * 64}])
def test_an_audit_head_chosen_by_whoever_wrote_the_medium_cannot_write_on_the_terminal(
    plain: Path, tmp_path: Path, head: dict[str, Any]
) -> None:
    backup = _with_head(plain, tmp_path, head)
    verified = io.StringIO()
    assert backup_verify(backup, stream=verified) == 1, verified.getvalue()
    restored = io.StringIO()
    assert backup_restore(backup, tmp_path / "home", stream=restored) == 1, restored.getvalue()
    for said in (verified.getvalue(), restored.getvalue()):
        assert "the manifest names seq" in said, said
        assert "\x1b" not in said, said


def test_a_custodian_key_named_by_the_medium_cannot_write_on_the_terminal(tmp_path: Path) -> None:
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    assert run_dxassist(home, "backup", "keygen", str(tmp_path / "custodian")).returncode == 0
    backup = tmp_path / "backup"
    made = run_dxassist(
        home, "backup", "create", str(backup), "--encrypt-to", str(tmp_path / "custodian.pub")
    )
    assert made.returncode == 0, made.stdout + made.stderr
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    manifest["sealed"]["recipient"] = "\x1b[2J\x1b[H" + manifest["sealed"]["recipient"]
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    out = io.StringIO()
    backup_verify(backup, any_origin=True, stream=out)
    assert "sealed for the custodian key" in out.getvalue(), out.getvalue()
    assert "\x1b" not in out.getvalue(), out.getvalue()
