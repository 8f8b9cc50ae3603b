"""What `backup verify` and `backup create` report on is the very bytes they read: the backup medium may be
written by others (a shared mount, a file system that ignores permissions), and a file changed between
two reads of it must not make a report about two different files.

Before, `verify` hashed `record.db` and then opened it again to check its audit trail: a record put in
its place between the two was the one whose trail was reported. `create` copied every file into the
backup and hashed it later, reading it back: a file rewritten in between was hashed, listed and signed
as if the server had copied it.

The changes are made at a point each command really passes, on the real files of a backup made by the
console script (or a home it made).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _dxassist_cli import plain_backup

import inference._backup.verify as verify_module
from inference._backup_cli import backup_verify

PLANTED = b"-----BEGIN PRIVATE KEY-----\na key of the one who wrote the backup medium\n"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsigned plain backup of a home whose record holds an audit entry."""
    return plain_backup(tmp_path_factory.mktemp("read-once"))


def _after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, change: Callable[[], None]) -> None:
    """Run ``change`` once, right after the first call of ``owner.name`` returns."""
    real = getattr(owner, name)
    done: list[bool] = []

    def then_change(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            change()
        return result

    monkeypatch.setattr(owner, name, then_change)


def _broken_trail(record: Path, into: Path) -> Path:
    """A copy of ``record`` with an audit entry added out of its chain (its trail no longer verifies)."""
    shutil.copyfile(record, into)
    columns = "time, subject, role, facility, action, resource_type, resource_id, patient_id, outcome, client"
    connection = sqlite3.connect(into)
    with connection:
        connection.execute(f"INSERT INTO audit_events ({columns}) SELECT {columns} FROM audit_events LIMIT 1")
    connection.close()
    return into


def test_verify_checks_the_audit_trail_of_the_record_it_hashed(
    plain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = tmp_path / "backup"
    shutil.copytree(plain, backup)
    broken = _broken_trail(backup / "record.db", tmp_path / "broken.db")
    head = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))["record"]["audit_head"]
    # Once every file was checked against the manifest, another record is put in place of the one hashed.
    _after(monkeypatch, verify_module, "_file_problems", lambda: os.replace(broken, backup / "record.db"))
    out = io.StringIO()
    code = backup_verify(backup, stream=out)
    # The record hashed is the backup's own, intact: so is its trail, the one the report is about.
    assert "record.db: audit" not in out.getvalue(), out.getvalue()
    assert code == 0, out.getvalue()
    assert f"audit trail intact up to head seq {head['seq']} sha256 {head['hash']}" in out.getvalue()


def test_verify_leaves_no_copy_of_the_record_behind(
    plain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the temporary folder of this verify
    out = io.StringIO()
    assert backup_verify(plain, stream=out) == 0, out.getvalue()
    assert list(scratch.iterdir()) == []
    assert not [p for p in plain.rglob("*") if p.name.startswith(".")]
