"""`dxassist backup create | verify | restore`: a consistent copy of a home while `dxassist serve` files
results, checked file by file and down its audit chain, restored elsewhere and served again.

The real console script in subprocesses, a real server filing vital signs in a loop (a token from
`dxassist token issue`), SQLite's online backup API underneath.
"""

from __future__ import annotations

import json
import resource
import shutil
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiny_models
from _dxassist_cli import DXASSIST, dxassist_env, serving


def _dxassist(
    home: Path, *args: str, preexec_fn: Callable[[], None] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args],
        env={**dxassist_env(home), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        preexec_fn=preexec_fn,
    )


def _vitals(i: int) -> dict[str, object]:
    return {
        "patient": {"identifier": f"IPP-BACKUP-{i % 5:03d}", "sex": "female" if i % 2 else "male"},
        "respiratory_rate": 14 + i % 12,
        "spo2": 91 + i % 8,
        "on_oxygen": False,
        "systolic_bp": 100 + i % 40,
        "heart_rate": 70 + i % 50,
        "temperature": 36.5 + (i % 20) / 10,
        "consciousness": "A",
    }


@dataclass(frozen=True)
class TakenBackup:
    """A backup taken while a server filed results, and what the test knows of that moment."""

    home: Path
    backup: Path
    token: str
    filed_before: list[str]  # results whose 201 came back before `backup create` started
    filed_during: int  # results filed while it ran
    create: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def taken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TakenBackup]:
    root = tmp_path_factory.mktemp("backup")
    home = root / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", root / "build")
    issued = _dxassist(
        home, "token", "issue", "--subject", "ward-7", "--role", "clinician", "--facility", "F1"
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    filed: list[str] = []
    started = threading.Event()
    stop = threading.Event()
    with serving(home, root / "serve.log") as url:

        def file_vitals() -> None:
            with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
                i = 0
                while not stop.is_set():
                    response = client.post(
                        "/v1/vitals", json=_vitals(i), headers={"Authorization": f"Bearer {token}"}
                    )
                    assert response.status_code == 201, response.text
                    filed.append(response.json()["result_id"])
                    i += 1
                    if i >= 5:
                        started.set()

        loop = threading.Thread(target=file_vitals)
        loop.start()
        try:
            assert started.wait(120), "the server filed no vital signs"
            before = list(filed)
            create = _dxassist(home, "backup", "create", str(root / "backup"))
            during = len(filed) - len(before)
        finally:
            stop.set()
            loop.join(timeout=120)
    yield TakenBackup(home, root / "backup", token, before, during, create)


def _manifest(backup: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    return loaded


def _copy(taken: TakenBackup, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(taken.backup, copy)
    return copy


def test_a_backup_taken_while_serving_verifies_and_holds_secrets_privately(taken: TakenBackup) -> None:
    assert taken.create.returncode == 0, taken.create.stdout + taken.create.stderr
    assert taken.filed_during > 0, "the server filed nothing while the backup ran: not a live backup"
    assert "secrets" in taken.create.stdout and "encrypted" in taken.create.stdout
    manifest = _manifest(taken.backup)
    text = (taken.backup / "manifest.json").read_text(encoding="utf-8")
    assert str(taken.home) not in text and str(taken.backup) not in text  # relative paths only
    files = manifest["files"]
    assert isinstance(files, dict)
    assert {"record.db", "keys/audit-anchor.key", "audit/head.json"} <= set(files)
    assert any(name.startswith("models/") for name in files)
    record = manifest["record"]
    assert isinstance(record, dict) and record["kind"] == "sqlite" and record["revision"]
    # Every result acknowledged before the backup began has its audit entry in the copy's chain.
    assert record["audit_head"]["seq"] >= len(taken.filed_before)
    keys = taken.backup / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir())
    assert not (taken.backup / ".partial").exists()
    assert not list(taken.backup.glob("record.db-*"))  # one self-contained file, no WAL beside it

    verified = _dxassist(taken.home, "backup", "verify", str(taken.backup))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    head = record["audit_head"]
    assert f"head seq {head['seq']} sha256 {head['hash']}" in verified.stdout


def test_a_moved_backup_restores_into_a_new_home_that_serves_its_results(
    taken: TakenBackup, tmp_path: Path
) -> None:
    moved = tmp_path / "elsewhere" / "backup"
    moved.parent.mkdir()
    shutil.copytree(taken.backup, moved)  # another path: nothing in it may point at the old one
    new_home = tmp_path / "restored"
    restored = _dxassist(new_home, "backup", "restore", str(moved), str(new_home))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert not (new_home / "manifest.json").exists()
    head = _manifest(taken.backup)["record"]["audit_head"]
    audited = _dxassist(new_home, "audit", "verify")  # the backup's anchor names its own head
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert (
        f"head seq {head['seq']}, head sha256 {head['hash']}, anchored at seq {head['seq']}" in audited.stdout
    )
    with serving(new_home, tmp_path / "serve.log") as url:
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
            headers = {"Authorization": f"Bearer {taken.token}"}  # the restored home's own key signed it
            for result_id in taken.filed_before:
                response = client.get(f"/v1/results/{result_id}", headers=headers)
                assert response.status_code == 200, response.text
                assert response.json()["result_id"] == result_id
    audited = _dxassist(new_home, "audit", "verify")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "audit trail intact" in audited.stdout


def test_verify_names_an_altered_file(taken: TakenBackup, tmp_path: Path) -> None:
    copy = _copy(taken, tmp_path)
    victim = next(p for p in sorted((copy / "models").rglob("*")) if p.is_file() and p.stat().st_size > 100)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    done = _dxassist(taken.home, "backup", "verify", str(copy))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{victim.relative_to(copy).as_posix()}: altered" in done.stdout
    assert "Traceback" not in done.stderr
    # Nothing is restored from a broken backup.
    new_home = tmp_path / "restored"
    refused = _dxassist(new_home, "backup", "restore", str(copy), str(new_home))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{victim.relative_to(copy).as_posix()}: altered" in refused.stdout
    assert not new_home.exists()


def test_verify_names_a_deleted_file(taken: TakenBackup, tmp_path: Path) -> None:
    copy = _copy(taken, tmp_path)
    (copy / "keys" / "audit-anchor.key").unlink()
    done = _dxassist(taken.home, "backup", "verify", str(copy))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "keys/audit-anchor.key: missing" in done.stdout
    assert "Traceback" not in done.stderr


def test_verify_names_a_row_appended_to_the_copied_audit_trail(taken: TakenBackup, tmp_path: Path) -> None:
    copy = _copy(taken, tmp_path)
    _append_audit_row(copy / "record.db", chained=True)
    done = _dxassist(taken.home, "backup", "verify", str(copy))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "record.db: altered" in done.stdout
    head = _manifest(copy)["record"]["audit_head"]
    assert f"record.db: audit entry seq {head['seq'] + 1}" in done.stdout
    assert "Traceback" not in done.stderr


def _append_audit_row(database: Path, *, chained: bool) -> None:
    """Insert an audit entry by hand: after the head (``chained``) or without a place in the chain."""
    columns = "time, subject, role, facility, action, resource_type, resource_id, patient_id, outcome, client"
    chain = ", seq, prev_hash, hash" if chained else ""
    values = ", seq + 1, hash, hash" if chained else ""
    connection = sqlite3.connect(database)
    with connection:
        connection.execute(
            f"INSERT INTO audit_events ({columns}{chain}) "
            f"SELECT {columns}{values} FROM audit_events ORDER BY seq DESC LIMIT 1"
        )
    connection.close()


def test_a_home_whose_trail_does_not_verify_is_backed_up_and_reported(
    taken: TakenBackup, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(taken.home, home)  # the server is stopped: a plain copy is consistent
    _append_audit_row(home / "record.db", chained=False)
    dest = tmp_path / "dest"
    done = _dxassist(home, "backup", "create", str(dest))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "does NOT verify" in done.stdout and "inserted by hand" in done.stdout
    assert (dest / "manifest.json").is_file()  # the data is kept: it is what the site has
    verified = _dxassist(home, "backup", "verify", str(dest))
    assert verified.returncode == 1 and "inserted by hand" in verified.stdout


def test_a_folder_that_is_not_empty_is_refused(taken: TakenBackup, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me\n", encoding="utf-8")
    done = _dxassist(taken.home, "backup", "create", str(dest))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not empty" in done.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]


def test_a_file_system_that_refuses_more_bytes_leaves_no_backup(taken: TakenBackup, tmp_path: Path) -> None:
    record_size = (taken.home / "record.db").stat().st_size
    # A file size limit (RLIMIT_FSIZE) makes the kernel refuse writes past it, as a full disk does:
    # the first model file of the cache is larger than what is left.
    limit = max(record_size * 4, 1 << 20)

    def _limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    model = max((p for p in (taken.home / "models").rglob("*.onnx")), key=lambda p: p.stat().st_size)
    assert model.stat().st_size < limit, "the test's limit must let the record copy through"
    dest = tmp_path / "dest"
    big = taken.home / "models" / "zz-large.onnx.bin"
    big.write_bytes(b"\0" * (limit + 1))  # a cache file larger than the limit
    try:
        done = _dxassist(taken.home, "backup", "create", str(dest), preexec_fn=_limited)
    finally:
        big.unlink()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ran out of room" in done.stderr
    assert "Traceback" not in done.stderr
    assert not dest.exists()


def test_a_record_in_postgresql_is_named_as_not_in_the_backup(taken: TakenBackup, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    done = _dxassist(
        taken.home,
        "backup",
        "create",
        str(dest),
        DXASSIST_DATABASE_URL="postgresql+psycopg://dxassist@127.0.0.1:9/dxassist",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pg_dump" in done.stdout and "NOT in this backup" in done.stdout
    manifest = _manifest(dest)
    assert manifest["record"] == {"kind": "external", "dialect": "postgresql"}
    assert "record.db" not in manifest["files"] and not (dest / "record.db").exists()
    assert "keys/token-signing-ed25519.pem" in manifest["files"]
    verified = _dxassist(taken.home, "backup", "verify", str(dest))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "pg_dump" in verified.stdout


def test_restore_refuses_a_home_that_is_not_empty(taken: TakenBackup, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "record.db").write_bytes(b"a newer record")
    done = _dxassist(home, "backup", "restore", str(taken.backup), str(home))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not a new or empty folder" in done.stderr
    assert (home / "record.db").read_bytes() == b"a newer record"


def test_a_dimse_spool_inside_the_homes_spool_folder_is_backed_up_once_without_receiving(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    spool = home / "spool"
    for rel, data in {
        "incoming/STUDY-A/1.dcm": b"waiting for analysis",
        "dead-letter/studies/STUDY-B/1.dcm": b"stopped retrying",
        "receiving/listener-1/2.dcm": b"association still open",
        "builds/build-1.hdr": b"source header of an output build",
    }.items():
        (spool / rel).parent.mkdir(parents=True, exist_ok=True)
        (spool / rel).write_bytes(data)
    dest = tmp_path / "backup"
    done = _dxassist(home, "backup", "create", str(dest), DXASSIST_DIMSE_SPOOL="spool")
    assert done.returncode == 0, done.stdout + done.stderr
    files = _manifest(dest)["files"]
    assert {
        "spool/incoming/STUDY-A/1.dcm",
        "spool/dead-letter/studies/STUDY-B/1.dcm",
        "spool/builds/build-1.hdr",
    } <= set(files)
    assert not any("receiving" in rel for rel in files)
    restored = tmp_path / "restored"
    done = _dxassist(home, "backup", "restore", str(dest), str(restored))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (restored / "spool/incoming/STUDY-A/1.dcm").read_bytes() == b"waiting for analysis"


@pytest.mark.parametrize(
    "change",
    [
        {"format_version": "1"},
        {"format_version": None},
        {"record": "sqlite"},
        {"record": {"audit_head": [1]}},
    ],
    ids=["version-text", "version-null", "record-text", "head-list"],
)
def test_a_manifest_of_the_wrong_shape_is_refused_in_one_line(
    taken: TakenBackup, tmp_path: Path, change: dict[str, Any]
) -> None:
    copy = _copy(taken, tmp_path)
    manifest = _manifest(copy)
    manifest.update(change)
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    verified = _dxassist(taken.home, "backup", "verify", str(copy))
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "not a dxassist backup manifest" in verified.stdout
    restored = _dxassist(taken.home, "backup", "restore", str(copy), str(tmp_path / "home"))
    assert restored.returncode == 1, restored.stdout + restored.stderr
    assert "restore refused" in restored.stdout and "Traceback" not in restored.stderr
    assert not (tmp_path / "home").exists()


def test_links_into_a_mounted_secret_are_copied_and_links_out_of_the_home_are_not(tmp_path: Path) -> None:
    # ``keys/`` as Kubernetes mounts a Secret (docs/deployment.md): every key a link into ``..data``, itself
    # a link to the current dot-named version folder.
    home = tmp_path / "home"
    version = home / "keys" / "..2026_12_04_08_00_00.000000001"
    version.mkdir(parents=True)
    (version / "deid-secret.bin").write_bytes(b"the de-identification secret")
    (home / "keys" / "..data").symlink_to(version.name)
    (home / "keys" / "deid-secret.bin").symlink_to("..data/deid-secret.bin")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"a file of the host, not of the installation")
    (home / "keys" / "host-file").symlink_to(outside)
    (home / "models").mkdir()
    (home / "models" / "escape.onnx").symlink_to("../../outside.txt")
    dest = tmp_path / "backup"
    done = _dxassist(home, "backup", "create", str(dest))
    assert done.returncode == 0, done.stdout + done.stderr
    files = _manifest(dest)["files"]
    assert "keys/deid-secret.bin" in files
    assert not any("outside" in rel or rel in ("keys/host-file", "models/escape.onnx") for rel in files)
    assert "keys/host-file" in done.stdout and "models/escape.onnx" in done.stdout
    assert "NOT in this backup" in done.stdout
    restored = tmp_path / "restored"
    done = _dxassist(home, "backup", "restore", str(dest), str(restored))
    assert done.returncode == 0, done.stdout + done.stderr
    secret = restored / "keys" / "deid-secret.bin"
    assert secret.read_bytes() == b"the de-identification secret" and not secret.is_symlink()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not (restored / "keys" / "host-file").exists()
