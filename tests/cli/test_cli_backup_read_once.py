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
from _dxassist_cli import plain_backup, run_dxassist

import inference._backup.create as create_module
import inference._backup.verify as verify_module
from inference._backup_cli import backup_create, backup_verify
from inference.config import Settings

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


def _after_each(
    monkeypatch: pytest.MonkeyPatch, steps: tuple[str, ...], path: Path, content: Callable[[bytes], bytes]
) -> list[bool]:
    """Rewrite ``path`` once (``content`` of its bytes), right after the first call of one of ``steps``
    (functions of ``backup create``) that returns with ``path`` written; the list says whether it was."""
    rewritten: list[bool] = []
    for step in steps:
        real = getattr(create_module, step)

        def then_rewrite(*args: Any, real: Any = real, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if path.is_file() and not rewritten:
                rewritten.append(True)
                path.write_bytes(content(path.read_bytes()))
            return result

        monkeypatch.setattr(create_module, step, then_rewrite)
    return rewritten


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


def test_a_file_rewritten_in_a_plain_backup_after_it_was_copied_is_not_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DEST ignores permissions (a shared mount): a key the server copied into DEST/.partial is rewritten
    # there before the server lists and signs what it wrote.
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    exported = run_dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    signer = tmp_path / "server.pub"
    signer.write_text(exported.stdout, encoding="utf-8")
    for name in [k for k in os.environ if k.startswith("DXASSIST_") or k == "MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    dest = tmp_path / "backup"
    key = sorted(p.name for p in (home / "keys").iterdir() if p.is_file() and p.name != "audit-anchor.key")[0]

    # Once the keys are copied (the last folder copied after them), before the listing.
    _after_each(monkeypatch, ("_copy_tree",), dest / ".partial" / "keys" / key, lambda _: PLANTED)
    made = io.StringIO()
    assert backup_create(Settings(), dest, stream=made) == 0, made.getvalue()
    assert "Signed with" in made.getvalue(), made.getvalue()
    monkeypatch.undo()
    out = io.StringIO()
    code = backup_verify(dest, signer=signer, stream=out)
    # What the server signed is what it copied: the rewritten key does not pass for it.
    assert code == 1, out.getvalue()
    assert f"keys/{key}: altered" in out.getvalue()


@pytest.mark.parametrize("rel", ["record.db", "mlflow.db", "audit/head.json"])
def test_a_database_or_anchor_rewritten_in_a_plain_backup_after_it_was_copied_is_not_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rel: str
) -> None:
    # As for the keys above: `create` wrote the record, the registry's database and the anchor into
    # DEST/.partial, then read them back from there to hash them; one rewritten there in between was
    # listed and signed as the server's.
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    exported = run_dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    signer = tmp_path / "server.pub"
    signer.write_text(exported.stdout, encoding="utf-8")
    sqlite3.connect(home / "mlflow.db").close()  # the embedded registry's database, as MLflow makes it
    for name in [k for k in os.environ if k.startswith("DXASSIST_") or k == "MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    dest = tmp_path / "backup"

    # As soon as it is in DEST, after a step of the copy (a folder of the home, the anchor beside the record).
    rewritten = _after_each(
        monkeypatch, ("_copy_tree", "_anchor_part"), dest / ".partial" / rel, lambda old: old + b"\n"
    )
    made = io.StringIO()
    assert backup_create(Settings(), dest, stream=made) == 0, made.getvalue()
    assert "Signed with" in made.getvalue(), made.getvalue()
    assert rewritten
    monkeypatch.undo()
    out = io.StringIO()
    code = backup_verify(dest, signer=signer, stream=out)
    assert code == 1, out.getvalue()
    assert f"{rel}: altered" in out.getvalue()
