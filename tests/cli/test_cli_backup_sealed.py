"""Sealed backups: `dxassist backup keygen`, `backup create DEST --encrypt-to CUSTODIAN.pub`, and `verify`
/ `restore` with `--key`. A backup holds the installation's keys and every patient's record; sealed,
neither the host that took it nor whoever finds the medium can read it, and a change to it is found.

The real console script; a server files a patient's vital signs first, so the record has something to
hide.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import select
import shutil
import socket
import stat
import subprocess
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tiny_models
from _dxassist_cli import DXASSIST, dxassist_env, serving

IDENTIFIER = "IPP-SEALED-4711"
NAME = "Benali^Khadija"


def _dxassist(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@dataclass(frozen=True)
class Sealed:
    home: Path
    root: Path
    backup: Path
    key: Path
    public: Path
    signer: Path
    create: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    root = tmp_path_factory.mktemp("sealed")
    home = root / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", root / "build")
    token = _dxassist(home, "token", "issue", "--subject", "ward", "--role", "clinician", "--facility", "F1")
    assert token.returncode == 0, token.stderr
    with serving(home, root / "serve.log") as url:
        filed = httpx.post(
            f"{url}/v1/vitals",
            json={
                "patient": {"identifier": IDENTIFIER, "name": NAME, "birth_date": "1950-02-01"},
                "heart_rate": 118,
                "respiratory_rate": 24,
            },
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
            trust_env=False,
            timeout=60,
        )
        assert filed.status_code == 201, filed.text
    custodians = root / "custodians"
    custodians.mkdir()
    keygen = _dxassist(home, "backup", "keygen", str(custodians / "records-office"))
    assert keygen.returncode == 0, keygen.stderr
    key, public = custodians / "records-office.key", custodians / "records-office.pub"
    create = _dxassist(home, "backup", "create", str(root / "backup"), "--encrypt-to", str(public))
    # The server's backup-signing public key, as its operator hands it to the custodians.
    exported = _dxassist(home, "backup", "signer")
    assert exported.returncode == 0, exported.stderr
    signer = custodians / "server.pub"
    signer.write_text(exported.stdout, encoding="utf-8")
    yield Sealed(home, root, root / "backup", key, public, signer, create)


def test_a_sealed_backup_holds_nothing_readable_and_leaves_no_plain_copy(sealed: Sealed) -> None:
    assert sealed.create.returncode == 0, sealed.create.stdout + sealed.create.stderr
    assert "Sealed for the custodian key" in sealed.create.stdout
    assert stat.S_IMODE(sealed.key.stat().st_mode) == 0o600
    names = sorted(p.name for p in sealed.backup.iterdir())
    assert names == ["backup.sealed", "manifest.json"]
    for path in sealed.backup.iterdir():
        data = path.read_bytes()
        assert IDENTIFIER.encode() not in data and b"Benali" not in data
        assert b"SQLite format 3" not in data and b"PRIVATE KEY" not in data
    manifest = json.loads((sealed.backup / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "dxassist-backup-sealed"
    assert manifest["record"]["audit_head"]["seq"] >= 1
    # The staging copy in the home is gone.
    assert not [p for p in sealed.home.iterdir() if p.name.startswith(".backup-staging-")]


def test_verify_checks_the_sealed_file_without_the_key_and_everything_with_it(sealed: Sealed) -> None:
    plain = _dxassist(sealed.home, "backup", "verify", str(sealed.backup))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "sealed backup intact as written" in plain.stdout and "--key" in plain.stdout
    full = _dxassist(
        sealed.home,
        "backup",
        "verify",
        str(sealed.backup),
        "--key",
        str(sealed.key),
        "--signer",
        str(sealed.signer),
    )
    assert full.returncode == 0, full.stdout + full.stderr
    assert "backup intact" in full.stdout and "audit trail intact" in full.stdout


def test_a_changed_or_cut_sealed_backup_is_found_even_with_its_manifest_rewritten(
    sealed: Sealed, tmp_path: Path
) -> None:
    for damage in ("flip", "cut"):
        copy = tmp_path / damage
        shutil.copytree(sealed.backup, copy)
        blob = copy / "backup.sealed"
        data = bytearray(blob.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
        else:
            del data[-4096:]
        blob.write_bytes(bytes(data))
        # Without the key: the sealed file no longer matches its manifest.
        assert _dxassist(sealed.home, "backup", "verify", str(copy)).returncode == 1
        # Whoever changed it also rewrote the manifest: the key still finds it.
        manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
        manifest["sealed"]["size"] = len(data)
        manifest["sealed"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        assert _dxassist(sealed.home, "backup", "verify", str(copy)).returncode == 0  # as written
        # Its signature names the sealed file that was written: the replaced one is refused unopened.
        signed = _dxassist(
            sealed.home,
            "backup",
            "verify",
            str(copy),
            "--key",
            str(sealed.key),
            "--signer",
            str(sealed.signer),
        )
        assert signed.returncode == 2 and "not the one its signature names" in signed.stderr, signed.stderr
        # Opened without that check, the chunks' authentication finds it.
        opened = _dxassist(
            sealed.home, "backup", "verify", str(copy), "--key", str(sealed.key), "--trust-any-origin"
        )
        assert opened.returncode == 2, opened.stdout + opened.stderr
        assert "altered or cut short" in opened.stderr or "cut short" in opened.stderr, opened.stderr
        restored = _dxassist(
            sealed.home,
            "backup",
            "restore",
            str(copy),
            str(tmp_path / f"home-{damage}"),
            "--key",
            str(sealed.key),
            "--trust-any-origin",
        )
        assert restored.returncode == 2, restored.stdout + restored.stderr
        assert not (tmp_path / f"home-{damage}").exists() or not any((tmp_path / f"home-{damage}").iterdir())


def test_restore_needs_the_custodian_key_and_the_restored_home_serves(sealed: Sealed, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    without = _dxassist(sealed.home, "backup", "restore", str(sealed.backup), str(target))
    assert without.returncode == 2 and "--key" in without.stderr, without.stderr
    # Another custodian's key is told apart from damage.
    other = _dxassist(sealed.home, "backup", "keygen", str(tmp_path / "other"))
    assert other.returncode == 0, other.stderr
    wrong = _dxassist(
        sealed.home,
        "backup",
        "restore",
        str(sealed.backup),
        str(target),
        "--key",
        str(tmp_path / "other.key"),
        "--signer",
        str(sealed.signer),
    )
    assert wrong.returncode == 2 and "another custodian key" in wrong.stderr, wrong.stderr
    done = _dxassist(
        sealed.home,
        "backup",
        "restore",
        str(sealed.backup),
        str(target),
        "--key",
        str(sealed.key),
        "--signer",
        str(sealed.signer),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit trail intact" in done.stdout
    # Nothing opened is left beside the restored home.
    assert not (target / ".backup-unsealed").exists()
    audit = _dxassist(target, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    users = _dxassist(target, "token", "issue", "--subject", "r", "--role", "radiologist", "--facility", "F1")
    assert users.returncode == 0  # the restored signing key works


def test_a_backup_sealed_elsewhere_for_the_same_custodian_is_refused_and_nothing_restored(
    sealed: Sealed, tmp_path: Path
) -> None:
    # The custodian's public key is no secret (the server holds it): whoever has it seals a backup of
    # their own making, with their own keys/ (a token signing key) and record inside.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    forged = tmp_path / "forged"
    made = _dxassist(elsewhere, "backup", "create", str(forged), "--encrypt-to", str(sealed.public))
    assert made.returncode == 0, made.stdout + made.stderr
    target = tmp_path / "restored"
    key = ("--key", str(sealed.key))
    signer = ("--signer", str(sealed.signer))

    refused = _dxassist(sealed.home, "backup", "restore", str(forged), str(target), *key, *signer)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "another backup-signing key" in refused.stderr, refused.stderr
    assert not target.exists() or not any(target.iterdir())
    # Its signature taken out: unsigned, refused as well.
    manifest = json.loads((forged / "manifest.json").read_text(encoding="utf-8"))
    del manifest["signed"]
    (forged / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    unsigned = _dxassist(sealed.home, "backup", "restore", str(forged), str(target), *key, *signer)
    assert unsigned.returncode == 2 and "not signed" in unsigned.stderr, unsigned.stderr
    assert not target.exists() or not any(target.iterdir())
    # Opening without naming the signer is refused, saying how to check it.
    unnamed = _dxassist(sealed.home, "backup", "verify", str(forged), *key)
    assert unnamed.returncode == 2 and "--signer" in unnamed.stderr, unnamed.stderr
    # The documented override opens it, saying that who made it was not checked.
    anyway = _dxassist(sealed.home, "backup", "verify", str(forged), *key, "--trust-any-origin")
    assert anyway.returncode == 0, anyway.stdout + anyway.stderr
    assert "NOT checked" in anyway.stdout


def test_a_plain_backup_in_place_of_a_sealed_one_is_refused_when_its_signer_is_asked_for(
    sealed: Sealed, tmp_path: Path
) -> None:
    # A plain backup needs no custodian key to make and carries no signature: put where the custodian
    # expects a sealed one, `restore --key --signer` restored it without a word, so the check of who made
    # a backup was passed by not sealing it at all (with a token signing key and record of one's own).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    forged = tmp_path / "forged"
    made = _dxassist(elsewhere, "backup", "create", str(forged))
    assert made.returncode == 0, made.stdout + made.stderr
    target = tmp_path / "restored"
    checked = ("--key", str(sealed.key), "--signer", str(sealed.signer))
    refused = _dxassist(sealed.home, "backup", "restore", str(forged), str(target), *checked)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not sealed" in refused.stderr, refused.stderr
    assert not target.exists() or not any(target.iterdir())
    verified = _dxassist(sealed.home, "backup", "verify", str(forged), *checked)
    assert verified.returncode == 2 and "not sealed" in verified.stderr, verified.stdout + verified.stderr
    # Without --key or --signer, a plain backup is verified and restored as before.
    plain = _dxassist(sealed.home, "backup", "restore", str(forged), str(target))
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_verify_and_restore_say_when_and_where_the_backup_was_made(sealed: Sealed, tmp_path: Path) -> None:
    # An older backup put in place of a newer one, or another server's, shows in what the custodian reads.
    as_written = _dxassist(
        sealed.home, "backup", "verify", str(sealed.backup), "--signer", str(sealed.signer)
    )
    assert as_written.returncode == 0, as_written.stdout + as_written.stderr
    made = json.loads((sealed.backup / "manifest.json").read_text(encoding="utf-8"))["created_at"]
    out = as_written.stdout
    assert "Signed by the backup-signing key" in out and made in out, out
    assert f"on host {socket.gethostname()}" in out, out
    target = tmp_path / "restored"
    done = _dxassist(
        sealed.home, "backup", "restore", str(sealed.backup), str(target), "--key", str(sealed.key),
        "--signer", str(sealed.signer),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"made {made} on host {socket.gethostname()}" in done.stdout, done.stdout
    assert not (target / ".backup-unsealed").exists()


def _left_by_a_killed_run(base: Path, name: str) -> Path:
    """What a verify or restore killed (-9) while the backup was open leaves in ``base``: the opened
    files in a private folder of ``base/.backup-unsealed``, locked by no one."""
    opened = base / ".backup-unsealed" / name
    (opened / "keys").mkdir(mode=0o700, parents=True)
    (opened / "record.db").write_bytes(IDENTIFIER.encode())
    (opened / "keys" / "token-signing-ed25519.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----")
    return opened


def test_a_sealed_backup_is_opened_in_the_home_never_in_tmp_and_what_a_killed_run_left_is_removed(
    sealed: Sealed, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    left = [_left_by_a_killed_run(home, "tmp1a2b3c4d"), _left_by_a_killed_run(home, "tmp5e6f7a8b")]
    # Another verify reading its own opened copy right now (it holds its folder locked): that stays.
    busy = _left_by_a_killed_run(home, "tmp00000000")
    held = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = subprocess.run(
            [str(DXASSIST), "backup", "verify", str(sealed.backup), "--key", str(sealed.key),
             "--signer", str(sealed.signer)],
            env={**dxassist_env(home), "TMPDIR": str(scratch)},
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
    finally:
        os.close(held)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(path.exists() for path in left)
    assert [p.name for p in (home / ".backup-unsealed").iterdir()] == [busy.name]
    assert list(scratch.iterdir()) == []  # nothing opened in the shared temporary folder

    # A restore killed while it was opening: the next restore into the same new home cleans up first.
    target = tmp_path / "restored"
    _left_by_a_killed_run(target, "tmp1a2b3c4d")
    restored = subprocess.run(
        [str(DXASSIST), "backup", "restore", str(sealed.backup), str(target), "--key", str(sealed.key),
         "--signer", str(sealed.signer)],
        env={**dxassist_env(sealed.home), "TMPDIR": str(scratch)},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert not (target / ".backup-unsealed").exists()
    assert list(scratch.iterdir()) == []


def test_a_passphrase_protected_custodian_key(sealed: Sealed, tmp_path: Path) -> None:
    made = _dxassist(
        sealed.home, "backup", "keygen", str(tmp_path / "vault"), "--passphrase-stdin", stdin="s3cret\n"
    )
    assert made.returncode == 0, made.stderr
    assert b"ENCRYPTED" in (tmp_path / "vault.key").read_bytes()
    backup = tmp_path / "backup"
    create = _dxassist(
        sealed.home, "backup", "create", str(backup), "--encrypt-to", str(tmp_path / "vault.pub")
    )
    assert create.returncode == 0, create.stdout + create.stderr
    key, signer = str(tmp_path / "vault.key"), ("--signer", str(sealed.signer))
    asked = _dxassist(sealed.home, "backup", "verify", str(backup), "--key", key, *signer)
    assert asked.returncode == 2 and "passphrase" in asked.stderr, asked.stderr
    wrong = _dxassist(
        sealed.home,
        "backup",
        "verify",
        str(backup),
        "--key",
        key,
        *signer,
        "--passphrase-stdin",
        stdin="nope\n",
    )
    assert wrong.returncode == 2 and "passphrase" in wrong.stderr, wrong.stderr
    right = _dxassist(
        sealed.home,
        "backup",
        "verify",
        str(backup),
        "--key",
        key,
        *signer,
        "--passphrase-stdin",
        stdin="s3cret\n",
    )
    assert right.returncode == 0, right.stdout + right.stderr
    assert "s3cret" not in right.stdout + right.stderr


def _reseal(sealed: Sealed, backup: Path, names: list[str], payload: Path) -> None:
    """Replace the sealed file of ``backup`` with one made for the same public key (which the host
    holds: anyone who has it can seal), and its manifest's size and sha256 with the new file's."""
    from inference.security._sealing import SealWriter, load_recipient

    blob = backup / "backup.sealed"
    with open(blob, "wb") as handle:
        writer = SealWriter(handle, load_recipient(sealed.public))
        for name in names:
            writer.add(name, payload)
        writer.close()
    data = blob.read_bytes()
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    manifest["sealed"]["size"] = len(data)
    manifest["sealed"]["sha256"] = hashlib.sha256(data).hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_a_sealed_stream_naming_an_impossible_file_is_refused_and_leaves_nothing_opened(
    sealed: Sealed, tmp_path: Path
) -> None:
    backup = tmp_path / "forged"
    shutil.copytree(sealed.backup, backup)
    payload = tmp_path / "payload"
    payload.write_bytes(b"plain text of the first file")
    _reseal(sealed, backup, ["keys/first", "keys/bad\x00name"], payload)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    opened = subprocess.run(
        [str(DXASSIST), "backup", "verify", str(backup), "--key", str(sealed.key), "--trust-any-origin"],
        env={**dxassist_env(sealed.home), "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert opened.returncode == 2, opened.stdout + opened.stderr
    assert "Traceback" not in opened.stderr and "cannot be opened" in opened.stderr, opened.stderr
    # What was opened before the refusal is not left in the temporary folder.
    assert list(scratch.iterdir()) == []


def test_verify_with_the_key_finds_an_outer_manifest_that_says_another_audit_head(
    sealed: Sealed, tmp_path: Path
) -> None:
    backup = tmp_path / "relabelled"
    shutil.copytree(sealed.backup, backup)
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    manifest["record"]["audit_head"]["seq"] += 1000  # claims to cover entries it does not hold
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    key = ("--key", str(sealed.key), "--signer", str(sealed.signer))
    opened = _dxassist(sealed.home, "backup", "verify", str(backup), *key)
    assert opened.returncode == 1, opened.stdout + opened.stderr
    assert "audit head" in opened.stdout, opened.stdout
    target = tmp_path / "restored"
    restored = _dxassist(sealed.home, "backup", "restore", str(backup), str(target), *key)
    assert restored.returncode == 1, restored.stdout + restored.stderr
    assert not target.exists() or not any(target.iterdir())


def _at_terminal(args: list[str], home: Path, typed: list[bytes]) -> tuple[int, bytes]:
    """Run ``dxassist args`` on a pseudo-terminal (its controlling terminal), typing each of ``typed``
    after the next prompt ending in ': '; its exit status and everything the terminal showed."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_terminal,  # noqa: PLW1509  (a terminal of its own, as a person's shell)
    )
    os.close(slave)
    shown = b""
    try:
        for answer in typed:
            prompts = shown.count(b": ")
            while shown.count(b": ") == prompts:
                ready, _, _ = select.select([master], [], [], 60)
                assert ready, f"no prompt for the passphrase: {shown!r}"  # liveness bound
                shown += os.read(master, 4096)
            os.write(master, answer + b"\n")
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                more = os.read(master, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not more:
                break
            shown += more
        return process.wait(timeout=60), shown
    finally:
        os.close(master)


def test_a_passphrase_typed_at_a_terminal_is_not_shown_and_keygen_asks_twice(
    sealed: Sealed, tmp_path: Path
) -> None:
    prefix = str(tmp_path / "typed")
    status, shown = _at_terminal(
        ["backup", "keygen", prefix, "--passphrase-stdin"], sealed.home, [b"typed-s3cret", b"typed-s3cret"]
    )
    assert status == 0, shown
    assert b"typed-s3cret" not in shown  # the terminal did not echo it
    assert b"ENCRYPTED" in (tmp_path / "typed.key").read_bytes()
    # Two that differ write nothing.
    status, shown = _at_terminal(
        ["backup", "keygen", str(tmp_path / "typo"), "--passphrase-stdin"], sealed.home, [b"one", b"two"]
    )
    assert status == 2 and b"differ" in shown, shown
    assert not (tmp_path / "typo.key").exists()
