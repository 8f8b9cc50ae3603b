"""Plain (unsealed) backups signed with the server's backup-signing key once it has one (`dxassist backup
signer`): `verify` and `restore --signer SERVER.pub` check who made the backup and when, as for sealed
backups. Before, a plain backup's time and host were whatever its manifest said: an older backup, or
another server's, put in its place read as this server's latest. A plain backup the signer did not sign
(unsigned, another server's, its manifest changed) is refused when the signer is asked for.

The real console script on a home whose record holds the audit entries of the tokens issued.
"""

from __future__ import annotations

import json
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _dxassist_cli import DXASSIST, dxassist_env, run_dxassist


def _home(root: Path, name: str, *, signer: bool) -> tuple[Path, Path | None]:
    """A home with a record (a token issued), and its backup-signing public key when ``signer``."""
    home = root / name
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    if not signer:
        return home, None
    exported = run_dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    public = root / f"{name}.pub"
    public.write_text(exported.stdout, encoding="utf-8")
    return home, public


def _manifest(backup: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    return manifest


@dataclass(frozen=True)
class Signed:
    home: Path
    signer: Path
    backup: Path
    create: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    root = tmp_path_factory.mktemp("signed-plain")
    home, signer = _home(root, "server", signer=True)
    assert signer is not None
    create = run_dxassist(home, "backup", "create", str(root / "backup"))
    return Signed(home, signer, root / "backup", create)


def test_a_plain_backup_is_signed_and_verify_and_restore_say_who_made_it_and_when(
    signed: Signed, tmp_path: Path
) -> None:
    assert signed.create.returncode == 0, signed.create.stdout + signed.create.stderr
    assert "Signed with this server's backup-signing key" in signed.create.stdout
    made = _manifest(signed.backup)["created_at"]

    checked = run_dxassist(
        signed.home, "backup", "verify", str(signed.backup), "--signer", str(signed.signer)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Signed by the backup-signing key" in checked.stdout, checked.stdout
    assert f"made {made} on host {socket.gethostname()}" in checked.stdout, checked.stdout
    assert "backup intact" in checked.stdout

    # Without --signer it is checked as before, and says that who made it was not checked.
    unchecked = run_dxassist(signed.home, "backup", "verify", str(signed.backup))
    assert unchecked.returncode == 0 and "not checked" in unchecked.stdout, unchecked.stdout

    target = tmp_path / "restored"
    done = run_dxassist(
        signed.home, "backup", "restore", str(signed.backup), str(target), "--signer", str(signed.signer)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signed by the backup-signing key" in done.stdout and (target / "record.db").is_file()


def test_a_plain_backup_whose_time_or_host_was_changed_is_refused_and_nothing_restored(
    signed: Signed, tmp_path: Path
) -> None:
    # An older backup passed off as a newer one: its manifest's time and host rewritten, files untouched.
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(signed.backup), str(backup)], check=True)
    manifest = _manifest(backup)
    manifest["created_at"] = "2031-01-01T00:00:00Z"
    manifest["origin"] = {"host": "pacs-gateway-2"}
    (backup / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    signer = ("--signer", str(signed.signer))

    verified = run_dxassist(signed.home, "backup", "verify", str(backup), *signer)
    assert verified.returncode == 2, verified.stdout + verified.stderr
    assert "changed after the backup was made" in verified.stderr, verified.stderr
    assert "backup intact" not in verified.stdout
    target = tmp_path / "restored"
    refused = run_dxassist(signed.home, "backup", "restore", str(backup), str(target), *signer)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert not target.exists() or not any(target.iterdir())


def test_an_unsigned_or_another_servers_plain_backup_is_refused_when_the_signer_is_asked_for(
    signed: Signed, tmp_path: Path
) -> None:
    # A server without a backup-signing key makes unsigned plain backups (and makes no key for them).
    bare, _ = _home(tmp_path, "bare", signer=False)
    unsigned = tmp_path / "unsigned"
    made = run_dxassist(bare, "backup", "create", str(unsigned))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "signed" not in _manifest(unsigned) and "Signed with" not in made.stdout
    assert not (bare / "keys" / "backup-signing-ed25519.pem").exists()
    # Another server, with its own key.
    other, _ = _home(tmp_path, "other", signer=True)
    foreign = tmp_path / "foreign"
    assert run_dxassist(other, "backup", "create", str(foreign)).returncode == 0

    target = tmp_path / "restored"
    signer = ("--signer", str(signed.signer))
    for backup, why in ((unsigned, "not signed"), (foreign, "another backup-signing key")):
        verified = run_dxassist(signed.home, "backup", "verify", str(backup), *signer)
        assert verified.returncode == 2 and why in verified.stderr, verified.stdout + verified.stderr
        refused = run_dxassist(signed.home, "backup", "restore", str(backup), str(target), *signer)
        assert refused.returncode == 2 and why in refused.stderr, refused.stdout + refused.stderr
        assert not target.exists() or not any(target.iterdir())
    # The documented override takes it, saying that who made it was not checked.
    anyway = run_dxassist(signed.home, "backup", "restore", str(foreign), str(target), "--trust-any-origin")
    assert anyway.returncode == 0, anyway.stdout + anyway.stderr
    assert "NOT checked" in anyway.stdout


def test_a_plain_backup_of_a_home_whose_signing_key_is_encrypted_says_what_to_set(tmp_path: Path) -> None:
    # The key made with DXASSIST_SIGNING_KEY_PASSPHRASE set; the scheduled backup run without it.
    home = tmp_path / "server"
    home.mkdir()
    passphrase = "a-synthetic-passphrase-7f3a"
    made = subprocess.run(
        [str(DXASSIST), "backup", "signer"],
        env={**dxassist_env(home), "DXASSIST_SIGNING_KEY_PASSPHRASE": passphrase},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    assert b"ENCRYPTED" in (home / "keys" / "backup-signing-ed25519.pem").read_bytes()

    dest = tmp_path / "backup"
    refused = run_dxassist(home, "backup", "create", str(dest))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = refused.stderr
    # What to set, where, and why; never the secret itself; and that nothing was written.
    assert "DXASSIST_SIGNING_KEY_PASSPHRASE is not set" in said, said
    assert "scheduled" in said and "signs its plain backups" in said, said
    assert "Nothing was written" in said, said
    assert passphrase not in said + refused.stdout
    assert not dest.exists() or not any(dest.iterdir())

    wrong = subprocess.run(
        [str(DXASSIST), "backup", "create", str(dest)],
        env={**dxassist_env(home), "DXASSIST_SIGNING_KEY_PASSPHRASE": "not-the-passphrase"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert wrong.returncode == 2 and "does not open" in wrong.stderr, wrong.stdout + wrong.stderr
    assert "not-the-passphrase" not in wrong.stderr + wrong.stdout

    done = subprocess.run(
        [str(DXASSIST), "backup", "create", str(dest)],
        env={**dxassist_env(home), "DXASSIST_SIGNING_KEY_PASSPHRASE": passphrase},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0 and "Signed with" in done.stdout, done.stdout + done.stderr
