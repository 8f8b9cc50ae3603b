"""Constants of ``dxassist backup`` and what it does with files: private folders, copies, hashes, the
file list of a folder, locks on staging folders, names shown on a terminal.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import signal
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from inference.errors import InferenceError

if TYPE_CHECKING:
    pass


MANIFEST: Final = "manifest.json"


PARTIAL: Final = ".partial"


FORMAT: Final = "dxassist-backup"


FORMAT_VERSION: Final = 1


SEALED_FORMAT: Final = "dxassist-backup-sealed"


SEALED_FILE: Final = "backup.sealed"


RECORD_FILE: Final = "record.db"


REGISTRY_FILE: Final = "mlflow.db"


ANCHOR_FILE: Final = "audit/head.json"


ANCHOR_KEY_FILE: Final = "keys/audit-anchor.key"


DIMSE_SPOOL_COPY: Final = "dimse-spool"
"""Where a DIMSE spool kept outside ``DXASSIST_HOME`` (``DXASSIST_DIMSE_SPOOL``) is put in the backup."""


STAGING: Final = ".backup-staging-"
"""The name's start of the private folder of the home a sealed backup is staged in."""


UNSEALING: Final = ".backup-unsealed"
"""Where ``verify`` (in the home) opens a sealed backup, 0700 (``restore``: in its staging folder)."""


RESTORING: Final = ".restoring-"
"""The name's end (after ``.HOME``, beside the new home) or start (inside it, when the home is a mount
point or its parent cannot be written) of the private folder a restore is staged in, 0700."""


# Folders copied as they are, relative to the home. ``receiving/`` (instances of associations still
# open: the sender has no answer yet and sends them again) and ``runs/`` (training work folders: the
# registered models are in ``mlartifacts/``) are left out.
_HOME_TREES: Final = ("mlartifacts", "models", "keys", "spool")


_SPOOL_TREES: Final = ("incoming", "dead-letter")


_SPOOL_RECEIVING: Final = "receiving"


_NO_ROOM: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


_HEADROOM: Final = 64 << 20
"""Free space a backup leaves on each file system it writes to (the live server's, the manifest)."""


_CHUNK: Final = 1 << 20


class BackupRefused(InferenceError):
    """The backup (or restore) cannot be made where asked; nothing that looks like a backup was left."""


@contextmanager
def _stopped_as_interrupted() -> Iterator[None]:
    """For the block, a SIGTERM (a scheduler's timeout, a service stop) interrupts as Ctrl-C does, so the
    ``finally`` that removes a private copy of patient data runs: by default it ends the process at once
    and leaves the copy (only the next verify or restore would remove it). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _private_file(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _private_folder(path: Path) -> None:
    """Make ``path`` and any missing folder above it, each 0700 (``mkdir(parents=True)`` would not)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)


def owner_of(status: os.stat_result) -> dict[str, int | str | None]:
    """A file's or folder's owner and mode, as a manifest lists them (a restore run as root puts them
    back: the server's service user reads what the operator restored).

    The owner's user and group names are listed beside their ids (None when this machine has no name for
    an id): a restore on another machine gives the files to the user of that name there, whose id may
    differ (a service account made again on a rebuilt server), as ``tar`` does."""
    import grp
    import pwd

    user: str | None = None
    group: str | None = None
    with suppress(KeyError):
        user = pwd.getpwuid(status.st_uid).pw_name
    with suppress(KeyError):
        group = grp.getgrgid(status.st_gid).gr_name
    return {
        "uid": status.st_uid,
        "gid": status.st_gid,
        "mode": stat.S_IMODE(status.st_mode),
        "user": user,
        "group": group,
    }


def _copy_file(source: Path, target: Path) -> dict[str, Any] | None:
    """Copy one file (0600, on disk before it returns); the size and sha256 of the very bytes written
    (the manifest's entry: a file rewritten in ``target`` afterwards does not pass for it), and the
    source's owner and mode (:func:`owner_of`), or None when it went away before it was opened."""
    try:
        reader = open(source, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:  # a study analysed, a cache entry replaced since the folder was listed
        return None
    _private_folder(target.parent)
    with reader, open(target, "xb", opener=_private_file) as writer:
        owner = owner_of(os.fstat(reader.fileno()))
        written = _Digesting(writer)
        shutil.copyfileobj(reader, written, _CHUNK)
        writer.flush()
        os.fsync(writer.fileno())
    return {"size": written.size, "sha256": written.digest.hexdigest(), **owner}


def _copy_tree(
    source: Path, target: Path, *, skip: frozenset[Path] = frozenset(), unfollowed: list[Path] | None = None
) -> dict[Path, dict[str, Any]]:
    """Copy the regular files under ``source`` (dot-named temporary and lock files, and the folders
    ``skip`` names, left out); each copy's place and its entry (:func:`_copy_file`).

    A symbolic link to a file inside ``source`` is copied as the file it names: a Kubernetes Secret or
    ConfigMap mounted as a folder (``keys/``) is made of such links into its own dot-named folder. A link
    that leads out of ``source``, or to no file, is not followed; its place in the backup is added to
    ``unfollowed``.
    """
    copied: dict[Path, dict[str, Any]] = {}
    if not source.is_dir():
        return copied
    root = source.resolve()
    for folder, subfolders, files in os.walk(source):
        here = Path(folder)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and here / d not in skip)
        for name in sorted(files):
            path = here / name
            if name.startswith("."):
                continue
            place = target / path.relative_to(source)
            if path.is_symlink():
                named = path.resolve()
                if not named.is_relative_to(root) or not named.is_file():
                    if unfollowed is not None:
                        unfollowed.append(place)
                    continue
                entry = _copy_file(named, place)
            elif path.is_file():
                entry = _copy_file(path, place)
            else:
                continue
            if entry is not None:
                copied[place] = entry
    return copied


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (its write-ahead log included), in one file.

    ``Connection.backup`` copies every page in one step under a read transaction: a snapshot of the
    committed state, while writers go on (WAL). The copy is switched to a rollback journal so that it
    is one self-contained file, readable read-only; a server opening it switches it back to WAL.
    """
    _private_folder(target.parent)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    live = sqlite3.connect(source, timeout=30)  # read only by the backup; a WAL file needs a writable open
    try:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        live.close()


def _copy_checked(source: Path, target: Path | None, entry: dict[str, Any]) -> str | None:
    """Copy ``source`` to ``target`` (0600, on disk before it returns; ``target`` None: only read it),
    hashing the very bytes copied; why they are not the file ``entry`` names (None when they are).

    The bytes checked are the bytes written: whoever can write the backup cannot put another file in
    place between a check and the copy. A link, or anything not a regular file, is not read. A file that
    cannot be read (its mode, a medium's error) is a problem of the backup, said so (what was copied of
    it is removed).

    Raises:
        OSError: ``target`` cannot be written.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return "missing"
        return _unreadable(e)
    with open(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            return "missing"
        digest, size, unread = hashlib.sha256(), 0, None
        writer = None
        if target is not None:
            _private_folder(target.parent)
            writer = open(target, "xb", opener=_private_file)  # noqa: SIM115 - closed below
        try:
            while True:
                try:
                    chunk = reader.read(_CHUNK)
                except OSError as e:
                    unread = _unreadable(e)
                    break
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                if writer is not None:
                    writer.write(chunk)
            if writer is not None and unread is None:
                writer.flush()
                os.fsync(writer.fileno())
        finally:
            if writer is not None:
                writer.close()
    if unread is not None:
        if target is not None:
            target.unlink(missing_ok=True)
        return unread
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        return "altered (its size or sha256 differs from the manifest)"
    return None


def _unreadable(error: OSError) -> str:
    """A file of a backup that cannot be read, as a problem line says it (the system's reason only)."""
    return f"cannot be read ({error.strerror or type(error).__name__})"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> Iterator[str]:
    """Every file under ``root`` as a relative POSIX path (links and other non-files too: named, not read)."""
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            yield (Path(folder) / name).relative_to(root).as_posix()


def _entry(root: Path, rel: str, *, folder: int | None = None) -> dict[str, Any]:
    """The size and sha256 of ``root/rel``, read through ``folder`` (``root`` as made, held open; links
    not followed) when given: the file written into it, even if its name now names another folder."""
    if folder is None:
        return {"size": (root / rel).stat().st_size, "sha256": _sha256(root / rel)}
    parts = PurePosixPath(rel).parts
    at, opened = folder, []
    try:
        for part in parts[:-1]:
            at = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at)
            opened.append(at)
        with open(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at), "rb") as handle:
            read = _Digesting(handle)
            while read.read(_CHUNK):
                pass
    finally:
        for fd in opened:
            os.close(fd)
    return {"size": read.size, "sha256": read.digest.hexdigest()}


class _Digesting:
    """A file that hashes, and counts, the bytes read or written through it: what is signed or checked
    is then the very bytes written or used, not those of a later read of a file someone else can replace.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._handle.write(data)


def _remove_unlocked(folders: Iterator[Path]) -> None:
    """Remove each of ``folders`` that no running process holds locked (:func:`_locked`): what a
    ``backup`` command killed (-9, the machine stopped) left behind."""
    for entry in folders:
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink(missing_ok=True)
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # its own process removed it meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # in use by a running command
        else:
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(fd)


def _locked(folder: Path) -> int:
    """Lock ``folder`` (``flock``, until the descriptor returned is closed) against
    :func:`_remove_unlocked`. A remover that locked it first removes it: what is then written into it
    fails, loudly; nothing is written into a folder that is not locked.

    Raises:
        OSError: ``folder`` was removed meanwhile.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _shown(value: Any) -> str:
    """A value of a manifest as a terminal may show it (whoever wrote the medium chose it)."""
    text = value if isinstance(value, str) else "-"
    return "".join(c if c.isprintable() else "?" for c in text[:200]) or "-"


def _shown_seq(value: Any) -> str:
    """An audit position a manifest names, as a terminal may show it (a number, or what :func:`_shown`
    makes of anything else)."""
    return str(value) if isinstance(value, int) else _shown(value)


def _named(rel: str) -> str:
    """A file's path in a backup as a problem line shows it: whoever wrote the medium chose the names in
    its manifest and folders, and a control character would write on the operator's terminal."""
    return "".join(c if c.isprintable() else "?" for c in rel)
