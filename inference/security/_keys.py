"""The Ed25519 signing key: generated on first use under ``settings.keys_dir``, readable by its owner only."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inference.security._errors import SigningKeyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from inference.config import Settings

KEY_FILE = "token-signing-ed25519.pem"
PUBLIC_FILE = "token-signing-ed25519.pub.pem"

_lock = threading.Lock()
_cache: dict[tuple[str, int, int, int, int], SigningKey] = {}
_checked: dict[str, tuple[float, SigningKey]] = {}
_RECHECK_SECONDS = 1.0
"""A key file replaced on disk (rotation) or removed is noticed within this many seconds."""


@dataclass(frozen=True)
class SigningKey:
    """A loaded key pair and its id (``kid``: first 16 hex digits of the sha256 of the raw public key)."""

    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    kid: str


def _passphrase(settings: Settings) -> bytes | None:
    secret = settings.security.signing_key_passphrase
    return secret.get_secret_value().encode() if secret is not None else None


def _write_new(path: Path, settings: Settings) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    publish_private_key(path, Ed25519PrivateKey.generate(), _passphrase(settings), path.parent / PUBLIC_FILE)


def publish_private_key(
    path: Path, key: Ed25519PrivateKey, passphrase: bytes | None, public_path: Path
) -> bool:
    """Write a new private key to ``path`` (PEM, PKCS#8, encrypted with ``passphrase`` when given, mode
    0600) and its public key to ``public_path``; False, writing nothing, when a key is already there.

    The key goes to a private temporary file first, then is hard-linked into place: the link fails if
    another process won the race (its key stays), and nobody ever reads a half-written key.
    """
    from cryptography.hazmat.primitives import serialization

    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return True


def _load(path: Path, settings: Settings) -> SigningKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=_passphrase(settings))
    except (ValueError, TypeError) as e:
        raise SigningKeyError(
            f"The token signing key in {path.parent} cannot be read; check DXASSIST_SIGNING_KEY_PASSPHRASE "
            "or remove the key file to generate a new one (tokens already issued then stop working)."
        ) from e
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"The token signing key in {path.parent} is not an Ed25519 key.")
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SigningKey(private=key, public=public, kid=hashlib.sha256(raw).hexdigest()[:16])


def signing_key(settings: Settings) -> SigningKey:
    """Return the process's signing key, generating it (mode 0600) on first use.

    Raises:
        SigningKeyError: The key file exists but cannot be read with the configured passphrase.
    """
    keys_dir = settings.keys_dir
    path = keys_dir / KEY_FILE
    now = time.monotonic()
    with _lock:
        # Every request verifies a token with this key: the file is looked at again at most once a
        # second (each look is a system call, which on the event loop's thread lets a busy decoding
        # thread take the interpreter for up to its switch interval).
        recent = _checked.get(str(path))
        if recent is not None and now - recent[0] < _RECHECK_SECONDS:
            return recent[1]
        try:
            found = os.stat(path)
        except FileNotFoundError:
            keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_new(path, settings)
            found = os.stat(path)
        # Keyed by the file's identity, so a key replaced on disk (rotation) is picked up. The inode alone
        # is not enough: a file system reuses a freed inode at once, and a key removed and made again could
        # come back under the old one's number (the old key then stayed in use: seen under load).
        cache_key = (str(path), found.st_dev, found.st_ino, found.st_mtime_ns, found.st_ctime_ns)
        cached = _cache.get(cache_key)
        if cached is None:
            cached = _cache[cache_key] = _load(path, settings)
        _checked[str(path)] = (now, cached)
        return cached
