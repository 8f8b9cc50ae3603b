"""A sealed backup as ``verify`` and ``restore`` read it: its sealed file checked as written, opened into
a private locked folder, and its outer manifest against what is sealed inside.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    pass

from inference._backup.files import (
    _CHUNK,
    MANIFEST,
    SEALED_FILE,
    UNSEALING,
    BackupRefused,
    _Digesting,
    _files,
    _locked,
    _named,
    _private_folder,
    _remove_unlocked,
    _sha256,
    _stopped_as_interrupted,
    _unreadable,
)
from inference._backup.manifest import _read_manifest


def _sealed_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    sealed = root / SEALED_FILE
    expected = manifest["sealed"]
    if sealed.is_symlink() or not sealed.is_file():
        return [f"{SEALED_FILE}: missing"]
    try:
        intact = sealed.stat().st_size == expected["size"] and _sha256(sealed) == expected["sha256"]
    except OSError as e:
        return [f"{SEALED_FILE}: {_unreadable(e)}"]
    if not intact:
        return [f"{SEALED_FILE}: altered (its size or sha256 differs from the manifest)"]
    extras = sorted(rel for rel in _files(root) if rel not in (MANIFEST, SEALED_FILE))
    return [f"{_named(rel)}: extra (not in the manifest)" for rel in extras]


def _clean_unsealing(base: Path) -> None:
    """Remove what an earlier ``verify`` or ``restore`` opened into ``base/.backup-unsealed`` and did not
    remove (killed, the machine stopped): every folder there that no running process holds locked."""
    area = base / UNSEALING
    if area.is_dir() and not area.is_symlink():
        _remove_unlocked(iter(sorted(area.iterdir())))


@contextmanager
def _unsealed(
    root: Path, key: Path, passphrase: bytes | None, base: Path, expected: dict[str, Any]
) -> Iterator[Path]:
    """Open the sealed backup in ``root`` into a new private folder of ``base/.backup-unsealed`` (0700,
    never a shared temporary folder) for the block; removed after it. The bytes opened are hashed as they
    are read and must be the sealed file ``expected`` names (the manifest's ``sealed``, whose size and
    sha256 were checked, and its signature): whoever can write the backup folder could otherwise put
    another sealed file in place between those checks and the opening. The folder is locked (``flock``)
    while open: what a process killed meanwhile leaves is removed by the next ``verify`` or ``restore``
    (:func:`_clean_unsealing`), and a folder in use is not.

    Raises:
        BackupRefused: The key cannot be used, or the sealed file is not this key's, altered or cut short.
    """
    from inference.security._sealing import SealError, load_custodian_key, unseal

    try:
        private = load_custodian_key(key, passphrase)
    except SealError as e:
        raise BackupRefused(str(e)) from e
    area = base / UNSEALING
    try:
        _private_folder(area)
        staging = Path(tempfile.mkdtemp(dir=area))  # 0700
    except OSError as e:
        raise BackupRefused(f"{area} cannot be written ({e.strerror or type(e).__name__}).") from e
    fd = -1
    try:
        with _stopped_as_interrupted():
            try:
                fd = _locked(staging)
                with open(root / SEALED_FILE, "rb") as handle:
                    reader = _Digesting(handle)
                    unseal(cast("BinaryIO", reader), private, staging, lambda _rel: True)
                    while reader.read(_CHUNK):  # what follows the sealed stream is part of the file too
                        pass
            except (SealError, OSError) as e:
                reason = str(e) if isinstance(e, SealError) else (e.strerror or type(e).__name__)
                raise BackupRefused(f"{root / SEALED_FILE} cannot be opened: {reason}") from e
            if (reader.size, reader.digest.hexdigest()) != (expected["size"], expected["sha256"]):
                raise BackupRefused(
                    f"{root / SEALED_FILE} is refused, nothing was restored or checked: the file opened is "
                    "not the one its manifest and signature name (it was replaced while it was read)."
                )
            yield staging
    finally:  # an interrupt too (SIGTERM included): what was opened is patient data, never left behind
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        with suppress(OSError):
            area.rmdir()  # when no other verify or restore uses it


def _outer_problems(outer: dict[str, Any], opened: Path, loaded: Any) -> list[str]:
    """What the outer manifest of a sealed backup says that its sealed content (its manifest ``loaded``
    from ``opened``) does not. The outer manifest is not sealed: whoever can write the medium can change
    the audit head it names."""
    inner, why = _read_manifest(opened, loaded)
    if inner is None:
        return [f"{SEALED_FILE}: its content is not a backup ({why})"]
    problems = []
    if outer.get("record") != inner.get("record"):
        problems.append(
            f"{MANIFEST}: the record and audit head it names are not those sealed inside (it was changed)"
        )
    if outer["sealed"].get("files") != len(inner["files"]):
        problems.append(f"{MANIFEST}: the file count it names is not that sealed inside (it was changed)")
    return problems
