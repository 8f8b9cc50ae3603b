"""The sealed-backup stream (inference.security._sealing) on streams of several chunks: what a custodian
gets back is what was sealed, and a stream cut at a chunk boundary, with two chunks swapped, or naming a
path outside its folder is refused whole."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from inference.security._sealing import (
    CHUNK,
    MAGIC,
    SealError,
    SealWriter,
    backup_signer,
    check_statement,
    generate_custodian_key,
    load_custodian_key,
    load_recipient,
    load_signer_public,
    sign_statement,
    unseal,
)

_TAG = 16


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "c.key", tmp_path / "c.pub"
    generate_custodian_key(private, public, None)
    return private, public


def _sealed(files: dict[str, bytes], public: Path, tmp_path: Path) -> bytes:
    out = io.BytesIO()
    writer = SealWriter(out, load_recipient(public))
    for rel, data in files.items():
        source = tmp_path / "src" / rel
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        writer.add(rel, source)
    writer.close()
    return out.getvalue()


def test_what_is_sealed_comes_back(keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = keys
    files = {"record.db": os.urandom(3 * CHUNK + 12345), "keys/a.key": b"k" * 10, "empty": b""}
    blob = _sealed(files, public, tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    written = unseal(io.BytesIO(blob), load_custodian_key(private, None), dest, lambda _rel: True)
    assert sorted(written) == sorted(files)
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data


@pytest.mark.parametrize("damage", ["cut-at-chunk", "swap-chunks", "appended"])
def test_a_damaged_stream_is_refused(keys: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    private, public = keys
    blob = bytearray(_sealed({"record.db": os.urandom(3 * CHUNK)}, public, tmp_path))
    first = len(MAGIC) + 32 + 32 + 8  # the header: magic, ephemeral key, salt, key fingerprint
    assert len(blob) > first + 3 * (CHUNK + _TAG)  # three full chunks, then the last one
    if damage == "cut-at-chunk":
        del blob[first + 3 * (CHUNK + _TAG) :]  # the last chunk dropped whole
    elif damage == "swap-chunks":
        a = blob[first : first + CHUNK + _TAG]
        b = blob[first + CHUNK + _TAG : first + 2 * (CHUNK + _TAG)]
        blob[first : first + 2 * (CHUNK + _TAG)] = b + a
    else:
        blob += os.urandom(CHUNK + _TAG)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(SealError):
        unseal(io.BytesIO(bytes(blob)), load_custodian_key(private, None), dest, lambda _rel: True)


@pytest.mark.parametrize("rel", ["../outside", "/etc/passwd", "a/../../b"])
def test_a_path_outside_the_folder_is_refused(keys: tuple[Path, Path], tmp_path: Path, rel: str) -> None:
    private, public = keys
    out = io.BytesIO()
    writer = SealWriter(out, load_recipient(public))
    source = tmp_path / "x"
    source.write_bytes(b"x")
    writer.add(rel, source)
    writer.close()
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(SealError):
        unseal(io.BytesIO(out.getvalue()), load_custodian_key(private, None), dest, lambda _rel: True)
    assert not (tmp_path / "outside").exists()


def test_a_signed_statement_changed_after_signing_or_of_another_key_is_refused(tmp_path: Path) -> None:
    server = backup_signer(tmp_path / "keys", None)
    assert (tmp_path / "keys" / "backup-signing-ed25519.pem").stat().st_mode & 0o777 == 0o600
    assert backup_signer(tmp_path / "keys", None).fingerprint == server.fingerprint  # made once, then kept
    public_file = tmp_path / "server.pub"
    public_file.write_bytes(server.public_pem())
    public, fingerprint = load_signer_public(public_file)
    signed = sign_statement(server, {"sealed_sha256": "ab" * 32, "created_at": "2026-12-04T10:00:00Z"})
    assert check_statement(signed, public, fingerprint)["created_at"] == "2026-12-04T10:00:00Z"
    # An older backup's time rewritten as a newer one's.
    changed = {**signed, "statement": {**signed["statement"], "created_at": "2026-12-05T10:00:00Z"}}
    with pytest.raises(SealError, match="does not verify"):
        check_statement(changed, public, fingerprint)
    # Signed by another home's key, its fingerprint written as the server's.
    other = sign_statement(backup_signer(tmp_path / "other", None), signed["statement"])
    with pytest.raises(SealError, match="another backup-signing key"):
        check_statement(other, public, fingerprint)
    with pytest.raises(SealError, match="does not verify"):
        check_statement({**other, "signer": fingerprint}, public, fingerprint)
