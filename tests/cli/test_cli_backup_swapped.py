"""A backup folder written by someone else while `backup verify` or `restore` reads it: what is checked is
what is used. Before, a signed plain backup's `manifest.json` was read once to check its signature and
again to restore from: a manifest swapped in between (naming a planted key) was restored, and said
signed. Each file was hashed in the backup, then read again to be copied: a file swapped in between was
copied into the new home and left there, the restore only saying that the copy did not verify.

The swaps are made at a point each command really passes (right after the signature is checked, right
after the backup's audit trail is read), on the real files of a backup made by the console script.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _dxassist_cli import run_dxassist

import inference._backup.create as create_module
import inference.record
import inference.security._sealing as sealing
from inference._backup_cli import BackupRefused, backup_create, backup_restore, backup_verify
from inference.config import Settings

PLANTED = b"-----BEGIN PRIVATE KEY-----\na key of the one who wrote the backup folder\n"


@dataclass(frozen=True)
class Signed:
    signer: Path
    backup: Path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """A signed plain backup of a home whose record holds an audit entry, and the server's public key."""
    root = tmp_path_factory.mktemp("swapped")
    home = root / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    exported = run_dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    public = root / "server.pub"
    public.write_text(exported.stdout, encoding="utf-8")
    made = run_dxassist(home, "backup", "create", str(root / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr
    return Signed(public, root / "backup")


def _copy(signed: Signed, tmp_path: Path) -> Path:
    backup = tmp_path / "backup"
    shutil.copytree(signed.backup, backup)
    return backup


def _plant(backup: Path) -> None:
    """What whoever can write the backup folder does: add a key, and a manifest naming it."""
    manifest: dict[str, Any] = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    (backup / "keys" / "planted.pem").write_bytes(PLANTED)
    manifest["files"]["keys/planted.pem"] = {
        "size": len(PLANTED),
        "sha256": hashlib.sha256(PLANTED).hexdigest(),
    }
    manifest["created_at"] = "2031-01-01T00:00:00Z"
    (backup / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, swap: Callable[[], None]) -> None:
    """Run ``swap`` once, right after the first call of ``owner.name`` returns."""
    real = getattr(owner, name)
    done: list[bool] = []

    def then_swap(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            swap()
        return result

    monkeypatch.setattr(owner, name, then_swap)


def test_a_manifest_swapped_after_its_signature_was_checked_is_not_restored(
    signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _copy(signed, tmp_path)
    _after(monkeypatch, sealing, "check_statement", lambda: _plant(backup))
    out = io.StringIO()
    home = tmp_path / "home"
    code = backup_restore(backup, home, signer=signed.signer, stream=out)
    assert not (home / "keys" / "planted.pem").exists(), out.getvalue()
    assert "2031-01-01" not in out.getvalue()
    assert code == 0, out.getvalue()  # the signed manifest's files, all of them intact
    assert (home / "record.db").is_file()


def test_a_manifest_swapped_after_its_signature_was_checked_is_not_said_intact(
    signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _copy(signed, tmp_path)
    _after(monkeypatch, sealing, "check_statement", lambda: _plant(backup))
    out = io.StringIO()
    code = backup_verify(backup, signer=signed.signer, stream=out)
    # Checked against the manifest that was signed, the planted key is a file it does not name.
    assert code == 1, out.getvalue()
    assert "keys/planted.pem: extra" in out.getvalue() and "backup intact" not in out.getvalue()


def test_a_file_swapped_after_it_was_checked_never_reaches_the_new_home(
    signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _copy(signed, tmp_path)
    key = sorted(path for path in (backup / "keys").iterdir() if path.is_file())[0]
    genuine = key.read_bytes()
    _after(monkeypatch, inference.record, "verify_sqlite_copy", lambda: key.write_bytes(PLANTED))
    out = io.StringIO()
    home = tmp_path / "home"
    code = backup_restore(backup, home, signer=signed.signer, stream=out)
    restored = home / key.relative_to(backup)
    assert not (restored.exists() and restored.read_bytes() == PLANTED), out.getvalue()
    assert code == 0, out.getvalue()
    assert restored.read_bytes() == genuine


def test_a_sealed_file_swapped_after_its_signature_was_checked_is_not_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone holding the custodian's public key can seal a backup: here, of a copy of the server's home
    # with a key of their own, the same record (the same audit head) and as many files.
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    assert run_dxassist(home, "backup", "keygen", str(tmp_path / "custodian")).returncode == 0
    custodian = tmp_path / "custodian.pub"
    other = tmp_path / "other"
    shutil.copytree(home, other)
    key = sorted(p for p in (other / "keys").iterdir() if p.is_file() and p.name != "audit-anchor.key")[0]
    key.write_bytes(PLANTED)
    for where, backup in ((home, "backup"), (other, "forged")):
        made = run_dxassist(where, "backup", "create", str(tmp_path / backup), "--encrypt-to", str(custodian))
        assert made.returncode == 0, made.stdout + made.stderr
    exported = run_dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    signer = tmp_path / "server.pub"
    signer.write_text(exported.stdout, encoding="utf-8")
    backup, forged = tmp_path / "backup", tmp_path / "forged" / "backup.sealed"

    _after(monkeypatch, sealing, "check_statement", lambda: shutil.copyfile(forged, backup / "backup.sealed"))
    out = io.StringIO()
    restored = tmp_path / "restored"
    refused: BackupRefused | None = None
    try:
        backup_restore(backup, restored, key=tmp_path / "custodian.key", signer=signer, stream=out)
    except BackupRefused as e:
        refused = e
    planted = restored / key.relative_to(other)
    assert not (planted.exists() and planted.read_bytes() == PLANTED), out.getvalue()
    assert refused is not None and "backup.sealed" in str(refused), out.getvalue()
    assert not restored.exists() or not any(restored.iterdir())


def test_a_sealed_file_swapped_while_it_is_written_is_not_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backup medium is writable by others (a shared mount): the sealed file is replaced right after
    # it was written, before the server hashes and signs what it wrote.
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    assert run_dxassist(home, "backup", "keygen", str(tmp_path / "custodian")).returncode == 0
    for name in [k for k in os.environ if k.startswith("DXASSIST_") or k == "MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    dest = tmp_path / "backup"

    def replace() -> None:
        (dest / ".partial" / "backup.sealed").write_bytes(b"not the sealed backup the server wrote")

    _after(monkeypatch, sealing.SealWriter, "close", replace)
    made = backup_create(Settings(), dest, encrypt_to=tmp_path / "custodian.pub", stream=io.StringIO())
    assert made == 0
    out = io.StringIO()
    # What the server signed is what it wrote: the replaced file does not pass for it.
    assert backup_verify(dest, stream=out) == 1, out.getvalue()
    assert "backup.sealed: altered" in out.getvalue()


def test_file_names_chosen_by_whoever_wrote_the_backup_cannot_write_on_the_terminal(
    signed: Signed, tmp_path: Path
) -> None:
    # A manifest (unsigned: checked without --signer) and a file naming control characters: a terminal
    # would clear the screen and show a line the command never wrote.
    backup = _copy(signed, tmp_path)
    manifest: dict[str, Any] = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    del manifest["signed"]
    forged = "keys/\x1b[2J\rbackup intact: 8 files as listed in its manifest\n"
    manifest["files"][forged] = {"size": 1, "sha256": "0" * 64}
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (backup / "keys" / "\x1b]0;restored\x07").write_bytes(b"x")
    for run in (
        lambda out: backup_verify(backup, stream=out),
        lambda out: backup_restore(backup, tmp_path / "home", stream=out),
    ):
        out = io.StringIO()
        assert run(out) == 1, out.getvalue()
        said = out.getvalue()
        assert "\x1b" not in said and "\r" not in said and "\x07" not in said, said
        assert not any(line.startswith("backup intact") for line in said.splitlines()), said
        assert "missing" in said


def test_a_folder_swapped_into_dest_while_a_plain_backup_is_written_is_not_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DEST is an existing folder others can write (a shared mount): after the files are copied into
    # DEST/.partial and before they are listed and signed, that folder is put aside and another one, the
    # same files and a key of its own, put in its place.
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
    dest.mkdir()

    def swap() -> None:
        partial = dest / ".partial"
        shutil.copytree(partial, dest / ".theirs")
        (dest / ".theirs" / "keys" / "planted.pem").write_bytes(PLANTED)
        partial.rename(tmp_path / "put-aside")
        (dest / ".theirs").rename(partial)

    # Once the keys are copied into DEST/.partial (the record, its anchor and the keys are all there).
    copy_tree = create_module._copy_tree
    swapped: list[bool] = []

    def copied_then_swap(*args: Any, **kwargs: Any) -> Any:
        result = copy_tree(*args, **kwargs)
        if not swapped and (dest / ".partial" / "keys").is_dir():
            swapped.append(True)
            swap()
        return result

    monkeypatch.setattr(create_module, "_copy_tree", copied_then_swap)
    made = io.StringIO()
    backup_create(Settings(), dest, stream=made)
    assert swapped
    assert "Signed with" in made.getvalue(), made.getvalue()
    monkeypatch.undo()
    out = io.StringIO()
    code = backup_verify(dest, signer=signer, stream=out)
    # What the server signed is what it wrote: the planted key is not vouched for.
    assert code == 1, out.getvalue()
    assert "keys/planted.pem: extra" in out.getvalue()
