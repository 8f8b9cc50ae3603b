"""Sealed backups: files encrypted to a custodian's X25519 public key, openable only with its private key.

The server that takes a backup holds only the custodian's public key: a stolen backup medium, or the
host itself, cannot open what was sealed. The construction is the usual hybrid one (as in ``age``):

- an ephemeral X25519 key pair per backup; ECDH with the recipient's public key, then HKDF-SHA256 (a
  random 32-byte salt, both public keys in its ``info``) gives one AES-256-GCM key;
- the plaintext (a sequence of files: relative path, size, bytes) is cut into 1 MiB chunks, each
  encrypted with a 96-bit nonce made of its index (88 bits) and a last-chunk flag (8 bits), the
  header as associated data. A chunk changed, dropped, reordered, or a stream cut after any chunk
  (the flag says which one is last) fails authentication; nothing of a failed stream is kept.

Header: :data:`MAGIC`, the ephemeral public key, the salt, the first 8 bytes of the recipient key's
fingerprint (to say "sealed for another key" rather than "corrupt").

Sealing hides a backup; anyone holding the public key can seal one. The server that makes a backup also
**signs** it with a backup-signing key of its home (Ed25519, :func:`backup_signer`, made on first use):
a statement naming the sealed file's sha256 and size, the custodian key, when and where it was made.
The custodian checks it against that key's public half (:func:`check_statement`), so a backup sealed
elsewhere (with another ``keys/`` and record inside) is told apart from the server's own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from inference.security._errors import SecurityError

MAGIC: Final = b"DXASSIST-SEAL\x00\x00\x01"
CHUNK: Final = 1 << 20
_TAG: Final = 16
_SALT: Final = 32
_KEY: Final = 32
_FINGERPRINT_BYTES: Final = 8
_HEADER: Final = len(MAGIC) + _KEY + _SALT + _FINGERPRINT_BYTES
_INFO: Final = b"dxassist sealed backup v1"
_PATH_MAX: Final = 4096
_RECORD: Final = struct.Struct(">HQ")  # path length, file size
SIGNER_FILE: Final = "backup-signing-ed25519.pem"
"""This server's backup-signing key, in the home's ``keys/`` (copied into its backups with the rest)."""
SIGNER_PUBLIC_FILE: Final = "backup-signing-ed25519.pub.pem"
_STATEMENT_CONTEXT: Final = b"dxassist sealed backup statement v1\n"


class SealError(SecurityError):
    """A sealed backup cannot be made or opened: a key file that is unreadable or of another kind, a
    wrong passphrase, a backup sealed for another key, or one altered, cut short or not sealed at all.
    Nothing of a stream that failed is kept."""


@dataclass(frozen=True)
class Recipient:
    """A custodian's public key and its fingerprint (sha256 of the raw key, hex)."""

    public: X25519PublicKey
    fingerprint: str


def _fingerprint(public: X25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def generate_custodian_key(private_path: Path, public_path: Path, passphrase: bytes | None) -> str:
    """Write a new X25519 key pair: the private key (PKCS#8 PEM, encrypted with ``passphrase`` when
    given, mode 0600) and the public key (PEM). Neither file may exist.

    Returns:
        The key's fingerprint.

    Raises:
        SealError: A file exists already or cannot be written.
    """
    private = X25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        with open(public_path, "xb") as handle:
            handle.write(public_pem)
    except OSError as e:
        raise SealError(
            f"The key files cannot be written ({e.strerror or type(e).__name__}); "
            "they must not exist already."
        ) from e
    return _fingerprint(private.public_key())


def load_recipient(path: Path) -> Recipient:
    """The custodian's public key (PEM, as ``dxassist backup keygen`` writes it).

    Raises:
        SealError: The file cannot be read or holds no X25519 public key.
    """
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise SealError(f"{path} cannot be read as a custodian's public key (PEM, X25519).") from e
    if not isinstance(public, X25519PublicKey):
        raise SealError(f"{path} is not an X25519 public key (make one with `dxassist backup keygen`).")
    return Recipient(public, _fingerprint(public))


def load_custodian_key(path: Path, passphrase: bytes | None) -> X25519PrivateKey:
    """The custodian's private key.

    Raises:
        SealError: The file cannot be read, needs a passphrase that was not given, the passphrase is
            wrong, or it holds no X25519 private key.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SealError(f"{path} cannot be read ({e.strerror or type(e).__name__}).") from e
    try:
        private = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as e:
        raise SealError(
            f"{path} is protected by a passphrase: give it (--passphrase-stdin), or it was given for a "
            "key that has none."
        ) from e
    except ValueError as e:
        raise SealError(
            f"{path} cannot be read as a custodian's private key, or the passphrase is wrong."
        ) from e
    if not isinstance(private, X25519PrivateKey):
        raise SealError(f"{path} is not an X25519 private key (make one with `dxassist backup keygen`).")
    return private


def _derive(shared: bytes, salt: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO + ephemeral + recipient).derive(
        shared
    )
    return AESGCM(key)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class SealWriter:
    """Writes files into a sealed stream: :meth:`add` each, then :meth:`close` (which seals the last
    chunk; a stream never closed does not open)."""

    def __init__(self, out: BinaryIO, recipient: Recipient) -> None:
        ephemeral = X25519PrivateKey.generate()
        salt = os.urandom(_SALT)
        eph_raw, rec_raw = _raw(ephemeral.public_key()), _raw(recipient.public)
        self._header = MAGIC + eph_raw + salt + bytes.fromhex(recipient.fingerprint)[:_FINGERPRINT_BYTES]
        self._aead = _derive(ephemeral.exchange(recipient.public), salt, eph_raw, rec_raw)
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        out.write(self._header)

    def _write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > CHUNK:  # keep at least one byte back: the last chunk is sealed as such
            self._emit(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]

    def _emit(self, plain: bytes, *, last: bool) -> None:
        self._out.write(self._aead.encrypt(_nonce(self._index, last), plain, self._header))
        self._index += 1

    def add(self, rel: str, source: Path) -> None:
        """Append ``source`` under the relative path ``rel``."""
        name = rel.encode("utf-8")
        size = source.stat().st_size
        self._write(_RECORD.pack(len(name), size) + name)
        with open(source, "rb") as handle:
            copied = 0
            while block := handle.read(CHUNK):
                copied += len(block)
                self._write(block)
        if copied != size:
            raise SealError(f"{rel} changed size while it was sealed.")

    def close(self) -> None:
        """End the file list and seal the last chunk."""
        self._write(_RECORD.pack(0, 0))
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()


def _chunks(source: BinaryIO, aead: AESGCM, header: bytes) -> Iterator[bytes]:
    """The stream's plaintext chunks, each authenticated; the last must be flagged as such."""
    index = 0
    pending = source.read(CHUNK + _TAG)
    while True:
        following = source.read(CHUNK + _TAG)
        last = not following
        try:
            yield aead.decrypt(_nonce(index, last), pending, header)
        except InvalidTag as e:
            raise SealError(
                "The sealed backup was altered or cut short (a chunk fails authentication); nothing of "
                "it can be trusted."
            ) from e
        if last:
            return
        pending, index = following, index + 1


class _Plain:
    """Reads exact byte counts out of the authenticated chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            more = next(self._chunks, None)
            if more is None:
                raise SealError("The sealed backup ends inside a file (cut short).")
            self._buffer += more
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def ends_here(self) -> bool:
        """Whether nothing follows: every remaining chunk is authenticated (the last-chunk flag checked),
        one at a time, and the first byte found after the end answers False (memory stays one chunk)."""
        if self._buffer:
            return False
        return not any(self._chunks)


def unseal(
    source: BinaryIO, private: X25519PrivateKey, dest: Path, check: Callable[[str], bool]
) -> list[str]:
    """Open a sealed stream into ``dest`` (an existing empty folder, mode kept private).

    Args:
        source: The sealed stream.
        private: The custodian's private key.
        dest: Where the files go (folders 0700, files 0600).
        check: Whether a relative path may be written (the caller's rules); a path it refuses, or one
            that is absolute or climbs out of ``dest``, fails the whole stream.

    Returns:
        The relative paths written.

    Raises:
        SealError: Not a sealed backup, sealed for another key, altered, cut short, or a refused path.
    """
    header = source.read(_HEADER)
    if len(header) != _HEADER or not header.startswith(MAGIC):
        raise SealError("This is not a sealed dxassist backup (its header is missing or of another format).")
    eph_raw = header[len(MAGIC) : len(MAGIC) + _KEY]
    salt = header[len(MAGIC) + _KEY : len(MAGIC) + _KEY + _SALT]
    sealed_for = header[len(MAGIC) + _KEY + _SALT :]
    mine = _raw(private.public_key())
    if sealed_for != bytes.fromhex(_fingerprint(private.public_key()))[:_FINGERPRINT_BYTES]:
        raise SealError(
            f"This backup was sealed for another custodian key (fingerprint {sealed_for.hex()}...), not "
            "the key given."
        )
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_raw))
    except ValueError as e:
        raise SealError("The sealed backup's header is damaged.") from e
    plain = _Plain(_chunks(source, _derive(shared, salt, eph_raw, mine), header))
    written: list[str] = []
    while True:
        length, size = _RECORD.unpack(plain.read(_RECORD.size))
        if length == 0:
            break
        if length > _PATH_MAX:
            raise SealError("The sealed backup names a file path longer than any backup writes.")
        try:
            rel = plain.read(length).decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            raise SealError("The sealed backup names a file a backup never holds (not UTF-8).") from e
        parts = PurePosixPath(rel).parts
        if "\x00" in rel or PurePosixPath(rel).is_absolute() or ".." in parts or not parts or not check(rel):
            raise SealError(f"The sealed backup names a file a backup never holds ({rel[:80]!r}).")
        target = dest.joinpath(*parts)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            left = size
            while left:
                block = plain.read(min(left, CHUNK))
                handle.write(block)
                left -= len(block)
        written.append(rel)
    if not plain.ends_here():
        raise SealError("The sealed backup holds data after its end marker.")
    return written


@dataclass(frozen=True)
class BackupSigner:
    """This server's backup-signing key and its fingerprint (sha256 of the raw public key, hex)."""

    private: Ed25519PrivateKey
    fingerprint: str

    def public_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo): what custodians give to ``--signer``."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _ed_fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def backup_signer(keys_dir: Path, passphrase: bytes | None) -> BackupSigner:
    """This server's backup-signing key, made on first use: ``keys_dir/backup-signing-ed25519.pem``
    (PKCS#8, 0600, encrypted with ``passphrase`` when given) and its public key beside it.

    Raises:
        SealError: The key cannot be written, read, or opened with ``passphrase``, or is of another kind.
    """
    path = keys_dir / SIGNER_FILE
    try:
        if not path.exists():
            keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_signer(path, passphrase)
        data = path.read_bytes()
    except OSError as e:
        raise SealError(
            f"The backup-signing key {path} cannot be made or read ({e.strerror or type(e).__name__})."
        ) from e
    try:
        private = serialization.load_pem_private_key(data, password=passphrase or None)
    except (TypeError, ValueError) as e:
        raise SealError(
            f"The backup-signing key {path} cannot be read with DXASSIST_SIGNING_KEY_PASSPHRASE."
        ) from e
    if not isinstance(private, Ed25519PrivateKey):
        raise SealError(f"The backup-signing key {path} is not an Ed25519 key.")
    return BackupSigner(private, _ed_fingerprint(private.public_key()))


def _write_signer(path: Path, passphrase: bytes | None) -> None:
    """A new key, written to a private file and linked into place (another process may win: its key stays)."""
    from inference.security._keys import publish_private_key

    publish_private_key(path, Ed25519PrivateKey.generate(), passphrase, path.parent / SIGNER_PUBLIC_FILE)


def load_signer_public(path: Path) -> tuple[Ed25519PublicKey, str]:
    """A server's backup-signing public key (PEM, as ``dxassist backup signer`` prints it) and its
    fingerprint.

    Raises:
        SealError: The file cannot be read or holds no Ed25519 public key.
    """
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise SealError(
            f"{path} cannot be read as a server's backup-signing public key (PEM, Ed25519: "
            "`dxassist backup signer` on that server prints it)."
        ) from e
    if not isinstance(public, Ed25519PublicKey):
        raise SealError(
            f"{path} is not a backup-signing public key (Ed25519: `dxassist backup signer` prints it)."
        )
    return public, _ed_fingerprint(public)


def _statement_bytes(statement: dict[str, Any]) -> bytes:
    return _STATEMENT_CONTEXT + json.dumps(
        statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def sign_statement(signer: BackupSigner, statement: dict[str, Any]) -> dict[str, Any]:
    """The signed form of ``statement`` (JSON values only), for a sealed backup's manifest."""
    return {
        "statement": statement,
        "signer": signer.fingerprint,
        "signature": base64.b64encode(signer.private.sign(_statement_bytes(statement))).decode("ascii"),
    }


def check_statement(signed: Any, public: Ed25519PublicKey, fingerprint: str) -> dict[str, Any]:
    """The statement of ``signed`` (what :func:`sign_statement` wrote), once its signature is found to
    be the key ``public``'s.

    Raises:
        SealError: It is not a signed statement, it names another signer, or its signature does not
            verify (the statement was changed after it was signed).
    """
    try:
        statement, signer, value = signed["statement"], signed["signer"], signed["signature"]
        if not (isinstance(statement, dict) and isinstance(signer, str) and isinstance(value, str)):
            raise TypeError
        signature = base64.b64decode(value, validate=True)
    except (KeyError, TypeError, ValueError) as e:
        raise SealError("Its signature is not one dxassist writes (damaged).") from e
    if signer != fingerprint:
        raise SealError(
            f"It was signed by another backup-signing key ({signer[:16]}), not the one given "
            f"({fingerprint[:16]}): it was not made by that server."
        )
    try:
        public.verify(signature, _statement_bytes(statement))
    except InvalidSignature as e:
        raise SealError(
            "Its signature does not verify with the key given: what it signed (the sealed file's sha256, "
            "when and where it was made) was changed since."
        ) from e
    return statement
