"""Who made a backup: this server's backup-signing key (``backup signer``), the custodian's public key a
sealed backup is made for, and the checks of a backup's signature (``--signer``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.security._sealing import BackupSigner, Recipient

from inference._backup.files import FORMAT, MANIFEST, SEALED_FILE, BackupRefused
from inference._backup.manifest import _made, _manifest_sha256


def _has_signer(settings: Settings) -> bool:
    """Whether this server has its backup-signing key (made by ``backup signer`` or a sealed backup)."""
    from inference.security._sealing import SIGNER_FILE

    return (settings.keys_dir / SIGNER_FILE).exists()


_SIGNS_PLAIN: Final = (
    "This server signs its plain backups (it has a backup-signing key: `backup signer` was run, or a "
    "sealed backup made), so that custodians can check who made each one and when"
)


_SIGNS_SEALED: Final = (
    "A sealed backup is signed with this server's backup-signing key, so that custodians can check who "
    "made it"
)


_PRINTS_SIGNER: Final = "`backup signer` prints the public key of this server's backup-signing key"


def _signer(settings: Settings, why: str) -> BackupSigner:
    """This server's backup-signing key, opened with ``DXASSIST_SIGNING_KEY_PASSPHRASE``.

    Raises:
        BackupRefused: The key cannot be made or opened: the message says ``why`` it is needed and, for
            a passphrase, whether it is unset or not the key's (never the passphrase itself).
    """
    from inference.security._sealing import SIGNER_FILE, SealError, backup_signer

    secret = settings.security.signing_key_passphrase
    passphrase = secret.get_secret_value().encode() if secret else b""
    try:
        return backup_signer(settings.keys_dir, passphrase or None)
    except SealError as e:
        path = settings.keys_dir / SIGNER_FILE
        try:
            encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
        except OSError:
            raise BackupRefused(str(e)) from e
        if encrypted and not passphrase:
            raise BackupRefused(
                f"{why}; its key {path} is encrypted and DXASSIST_SIGNING_KEY_PASSPHRASE is not set. Set "
                "DXASSIST_SIGNING_KEY_PASSPHRASE to the passphrase the key was made with in this command's "
                "environment (a scheduled job's too: cron and systemd timers do not read a login shell's "
                "profile). Nothing was written."
            ) from e
        if encrypted:
            raise BackupRefused(
                f"{why}; DXASSIST_SIGNING_KEY_PASSPHRASE does not open its key {path} (it is not the "
                "passphrase the key was made with). Nothing was written."
            ) from e
        raise BackupRefused(str(e)) from e


def backup_signer_key(settings: Settings, stream: BinaryIO | None = None) -> int:
    """Write this server's backup-signing public key (PEM; the key is made on first use) to ``stream``
    (stdout), its fingerprint on stderr: the file custodians give to ``verify|restore --signer``.

    Raises:
        BackupRefused: The key cannot be made or read.
    """
    signer = _signer(settings, _PRINTS_SIGNER)
    out = stream if stream is not None else sys.stdout.buffer
    out.write(signer.public_pem())
    out.flush()
    sys.stderr.write(f"backup-signing key {signer.fingerprint[:16]} of {settings.resolved_home}\n")
    return 0


def _recipient(path: Path) -> Recipient:
    from inference.security._sealing import SealError, load_recipient

    try:
        return load_recipient(path)
    except SealError as e:
        raise BackupRefused(str(e)) from e


def _origin_line(
    root: Path, manifest: dict[str, Any], *, signer: Path | None, any_origin: bool, opening: bool
) -> str:
    """Who made the sealed backup in ``root`` and when, as a line to print: checked against ``signer`` (a
    server's backup-signing public key), or said unchecked.

    Raises:
        BackupRefused: ``signer`` cannot be read; the backup is unsigned, signed by another key, or its
            signature does not verify or names another sealed file; or it is to be opened (``opening``)
            with neither ``signer`` nor ``any_origin``.
    """
    from inference.security._sealing import SealError, check_statement, load_signer_public

    signed = manifest.get("signed")
    if signer is None:
        claims = signed.get("statement") if isinstance(signed, dict) else None
        said = _made(claims if isinstance(claims, dict) else manifest)
        if any_origin:
            return (
                "WARNING: who made this backup is NOT checked (--trust-any-origin): anyone holding the "
                f"custodian's public key can seal a backup. It says it was made {said}."
            )
        if opening:
            raise BackupRefused(
                f"{root}: give --signer SERVER.pub, the backup-signing public key of the server that made "
                "it (`dxassist backup signer` there), to check who made it: anyone holding the custodian's "
                "public key can seal a backup. --trust-any-origin opens it unchecked."
            )
        return f"It says it was made {said} (not checked: give --signer SERVER.pub)."
    try:
        public, fingerprint = load_signer_public(signer)
    except SealError as e:
        raise BackupRefused(str(e)) from e
    try:
        if not isinstance(signed, dict):
            raise SealError(
                "It is not signed (made by a dxassist that did not sign sealed backups, or its signature "
                "was removed)."
            )
        statement = check_statement(signed, public, fingerprint)
    except SealError as e:
        raise BackupRefused(
            f"{root} is refused, nothing was opened: {e} (--trust-any-origin opens it unchecked)"
        ) from e
    sealed = manifest["sealed"]
    named = (statement.get("sealed_sha256"), statement.get("sealed_size"), statement.get("recipient"))
    if named != (sealed["sha256"], sealed["size"], sealed["recipient"]):
        raise BackupRefused(
            f"{root} is refused, nothing was opened: its {SEALED_FILE} is not the one its signature names "
            "(it was replaced)."
        )
    return f"Signed by the backup-signing key {fingerprint[:16]} ({signer}): made {_made(statement)}."


def _plain_origin(
    root: Path, loaded: Any, *, key: Path | None, signer: Path | None, any_origin: bool
) -> str | None:
    """Who made the plain backup in ``root`` and when, as a line to print (None for an unsigned backup
    checked without ``signer``): the signature of its manifest as ``loaded`` (:func:`_load_manifest`: the
    manifest then used, not read again) checked against ``signer``, or said unchecked.

    A plain backup is refused where a sealed one was expected (``key``), and where its maker is to be
    checked (``signer``) when it is unsigned: anyone can make a plain backup, so taking an unsigned one
    would pass the check of who made it by not signing it at all.

    Raises:
        BackupRefused: ``key`` was given; ``signer`` cannot be read, or the backup is unsigned, signed by
            another key, or its manifest was changed after it was signed.
    """
    from inference.security._sealing import SealError, check_statement, load_signer_public

    if key is not None:
        raise BackupRefused(
            f"{root} is not sealed (no {SEALED_FILE} named by a sealed manifest), though --key was given: "
            "a plain backup needs no custodian key to be made, anyone can make one. Nothing was opened or "
            "copied; without --key it is checked as a plain backup."
        )
    manifest = loaded
    signed = manifest.get("signed") if isinstance(manifest, dict) else None
    if signer is None:
        if not isinstance(manifest, dict) or signed is None:
            return None
        claims = signed.get("statement") if isinstance(signed, dict) else None
        said = _made(claims if isinstance(claims, dict) else manifest)
        if any_origin:
            return (
                "WARNING: who made this backup is NOT checked (--trust-any-origin); "
                f"it says it was made {said}."
            )
        return f"It says it was made {said} (signed; not checked: give --signer SERVER.pub)."
    try:
        public, fingerprint = load_signer_public(signer)
    except SealError as e:
        raise BackupRefused(str(e)) from e
    try:
        if not isinstance(manifest, dict) or not isinstance(signed, dict):
            raise SealError(
                "It is not signed (made by a server without a backup-signing key, by a dxassist that did "
                "not sign plain backups, or its signature was removed)"
            )
        statement = check_statement(signed, public, fingerprint)
    except SealError as e:
        raise BackupRefused(
            f"{root} is refused, nothing was opened or copied: {str(e).rstrip('.')}. "
            "--trust-any-origin (instead of --signer) takes it unchecked."
        ) from e
    if statement.get("format") != FORMAT or statement.get("manifest_sha256") != _manifest_sha256(manifest):
        raise BackupRefused(
            f"{root} is refused, nothing was opened or copied: its {MANIFEST} is not the one its signature "
            "names (it was changed after the backup was made)."
        )
    return f"Signed by the backup-signing key {fingerprint[:16]} ({signer}): made {_made(statement)}."
