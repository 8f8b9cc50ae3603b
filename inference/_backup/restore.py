"""``dxassist backup restore``: a verified backup copied into a new home, staged and checked beside it,
then moved into place.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    pass

from inference._backup.files import (
    MANIFEST,
    RESTORING,
    UNSEALING,
    BackupRefused,
    _copy_checked,
    _files,
    _locked,
    _named,
    _private_folder,
    _shown,
    _stopped_as_interrupted,
)
from inference._backup.journal import STAGED, finish_moves, fsync_folder, move_entries
from inference._backup.manifest import _load_manifest, _made, _read_manifest, _sealed_manifest
from inference._backup.sealed import _clean_unsealing, _outer_problems, _sealed_problems, _unsealed
from inference._backup.signing import _origin_line, _plain_origin
from inference._backup.verify import _record_problems, _restore_notes


def backup_restore(
    backup: Path,
    home: Path,
    *,
    key: Path | None = None,
    passphrase: bytes | None = None,
    signer: Path | None = None,
    any_origin: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Copy a verified backup into ``home`` (a new or empty folder), then check the copy. When and on
    which host it was made is printed.

    A sealed backup needs ``key`` (the custodian's private key) and ``signer`` (the backup-signing public
    key of the server that made it; ``any_origin``: not checked): it is opened into the staging folder
    and restored from there. A plain backup's signature is checked against ``signer`` when given, before
    anything is copied. Everything is copied and checked in a private staging folder beside ``home``
    (:func:`_restoring`), then moved into place (:func:`_move_into_place`): a restore killed meanwhile
    (-9, the machine stopped) leaves ``home`` as it was and that hidden folder, which the next restore
    into ``home`` removes first; one killed while it moves the files into an existing home is completed
    by the next ``dxassist`` command on it, or taken back by the next restore.

    Returns:
        0 when the backup was restored and the restored files and audit trail verify; 1 when the backup
        is broken or a file changes while it is copied (each is checked on the bytes copied): what was
        copied is then removed.

    Raises:
        BackupRefused: ``backup`` is not a folder, ``home`` is not a new or empty folder, or it cannot
            be written; a sealed backup is not signed by ``signer`` (or neither it nor ``any_origin``
            was given), or ``key`` cannot open it; ``key`` was given for a plain backup, or ``signer``
            for one it did not sign (unsigned, or changed since).
    """
    out = stream if stream is not None else sys.stdout
    if not backup.is_dir():
        raise BackupRefused(f"{backup} is not a folder.")
    _clean_restoring(home)
    if home.is_dir():
        _clean_unsealing(home)  # what a restore of an earlier dxassist left
        with suppress(OSError):
            (home / UNSEALING).rmdir()
    if home.exists() and (not home.is_dir() or any(p.name != _FILE_SYSTEMS_OWN for p in home.iterdir())):
        raise BackupRefused(
            f"{home} is not a new or empty folder; a restore never writes over an installation."
        )
    loaded = _load_manifest(backup)
    sealed = _sealed_manifest(loaded)
    if sealed is not None:
        problems = _sealed_problems(backup, sealed)
        if problems:
            out.write(
                f"restore refused: the backup is BROKEN ({len(problems)} problem(s)); nothing was copied\n"
            )
            for line in problems:
                out.write(f"  {line}\n")
            return 1
        if key is None:
            raise BackupRefused(
                f"{backup} is sealed (for the custodian key {_shown(sealed['sealed']['recipient'])[:16]}): "
                "give its private key with --key."
            )
        out.write(f"{_origin_line(backup, sealed, signer=signer, any_origin=any_origin, opening=True)}\n")
        with _restoring(home) as work, _unsealed(backup, key, passphrase, work, sealed["sealed"]) as opened:
            inner = _load_manifest(opened)
            problems = _outer_problems(sealed, opened, inner)
            if problems:
                out.write(f"restore refused: the backup is BROKEN ({len(problems)} problem(s)); ")
                out.write("nothing was copied\n")
                for line in problems:
                    out.write(f"  {line}\n")
                return 1
            return _restore_files(opened, home, work, out, inner)
    made_by = _plain_origin(backup, loaded, key=key, signer=signer, any_origin=any_origin)
    if made_by is not None:
        out.write(f"{made_by}\n")
    with _restoring(home) as work:
        return _restore_files(backup, home, work, out, loaded)


_FILE_SYSTEMS_OWN = "lost+found"
"""What ``mkfs`` leaves at the root of every new ext2/3/4 volume: a home on a volume of its own is empty
with it (it is kept as it is; a backup never holds an entry of that name)."""


def _staged_inside(home: Path) -> bool:
    """Whether a restore into ``home`` is staged inside it: it is a mount point (a volume: a folder
    beside it is on another file system) or its parent cannot be written."""
    return home.is_dir() and (os.path.ismount(home) or not os.access(home.parent, os.W_OK))


def _staging_places(home: Path) -> list[tuple[Path, str]]:
    """Where a restore into ``home`` stages (folder, name's start): beside it, or inside it."""
    return [(home.parent, f".{home.name}{RESTORING}"), (home, RESTORING)]


def _clean_restoring(home: Path) -> None:
    """Remove what a restore into ``home`` killed (-9, the machine stopped) staged beside or inside it:
    every such folder no running restore holds locked, and what one killed while it moved its entries
    into the home had moved there (:mod:`inference._backup.journal`: the home is empty again)."""
    finish_moves(home, complete=False, remove=True)


@contextmanager
def _restoring(home: Path) -> Iterator[Path]:
    """A new private folder (0700, locked: :func:`_clean_restoring` leaves it while in use) a restore
    into ``home`` is staged in for the block, beside the home (or inside it, :func:`_staged_inside`):
    the restored home is made in its ``home/`` and moved into place once checked (:func:`_move_into_place`);
    removed after, whatever happens. A restore killed meanwhile leaves it, never a half-restored home; the
    next restore removes it.

    Raises:
        BackupRefused: The folder cannot be made.
    """
    home = Path(os.path.realpath(home))  # a link to the folder: staged beside that folder
    base, start = _staging_places(home)[1 if _staged_inside(home) else 0]
    try:
        _private_folder(base)
        work = Path(tempfile.mkdtemp(prefix=start, dir=base))  # 0700
    except OSError as e:
        raise BackupRefused(f"{base} cannot be written ({e.strerror or type(e).__name__}).") from e
    fd = -1
    try:
        try:
            fd = _locked(work)
        except OSError as e:
            raise BackupRefused(f"{work} cannot be written ({e.strerror or type(e).__name__}).") from e
        with _stopped_as_interrupted():
            yield work
    finally:  # an interrupt too (SIGTERM included): what was copied is patient data, never left behind
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(work, ignore_errors=True)


def _move_into_place(staged: Path, home: Path) -> None:
    """Move the checked home ``staged`` to ``home``: one rename when it is new; into it, entry by entry
    (the record last), when it exists (empty: an operator's folder, kept with its owner, mode and ACLs;
    a mount point), once a journal names the moves (:func:`~inference._backup.journal.move_entries`: a
    restore killed between two of them is completed by the next ``dxassist`` command on the home, or
    taken back by the next restore). The moves are put on disk."""
    if home.is_dir():
        move_entries(staged.parent, home)
        return
    os.rename(staged, home)  # refused if something was put there meanwhile (a file, a folder not empty)
    fsync_folder(home.parent)


def _local_id(kind: str, name: object, listed: object, unmatched: set[str]) -> int | None:
    """The id on this machine of the ``kind`` (``user`` or ``group``) a manifest lists: that of its name
    when this machine has one of that name, else the listed id (a backup made before names were listed,
    or a name this machine lacks: then added to ``unmatched`` as ``kind name``). None when neither is
    listed."""
    import grp
    import pwd

    if isinstance(name, str) and name:
        try:
            return pwd.getpwnam(name).pw_uid if kind == "user" else grp.getgrnam(name).gr_gid
        except KeyError:
            unmatched.add(f"{kind} {name}")
    return listed if isinstance(listed, int) and listed >= 0 else None


def _give_owners(staged: Path, manifest: dict[str, Any], *, home_too: bool) -> list[str]:
    """Give the restored files and folders in ``staged`` the owners the backup lists when run as root
    (only root may give a file away), and their modes: the server's service user then reads what an
    operator restored. Never more than the owner and group had (nothing restored is readable by others:
    patient data and keys), a key file never more than 0600 (a link into a mounted Secret lists the
    mount's mode), a folder always its owner's to enter and change (the restore moves entries out of
    it). ``home_too``: the home itself too (a new one; an existing folder keeps its own). A backup made
    before they were listed leaves the restoring user's, private.

    Owners are matched by name, as ``tar`` does: the user and group of the listed name on this machine,
    whatever their ids (a restore onto a rebuilt server, whose service account got another id); a name
    this machine lacks falls back to the listed id. Returns those names (``user NAME``, ``group NAME``),
    for the operator to check."""
    listed = manifest.get("folders")
    folders = listed if isinstance(listed, dict) else {}
    root = os.geteuid() == 0
    unmatched: set[str] = set()
    for rel, owner in [*manifest["files"].items(), *folders.items()]:
        relative = PurePosixPath(rel) if isinstance(rel, str) else None
        if (
            not isinstance(owner, dict)
            or relative is None
            or relative.is_absolute()
            or ".." in relative.parts
        ):
            continue
        if rel == "." and not home_too:
            continue
        path = staged / relative
        if path.is_symlink() or not path.exists():
            continue
        mode = owner.get("mode")
        if root:
            uid = _local_id("user", owner.get("user"), owner.get("uid"), unmatched)
            gid = _local_id("group", owner.get("group"), owner.get("gid"), unmatched)
            if uid is not None and gid is not None:
                os.chown(path, uid, gid, follow_symlinks=False)  # before the mode: a chown clears setgid
        if not isinstance(mode, int):
            continue
        mode &= 0o2770
        if path.is_dir():
            mode |= 0o700
        elif relative.parts[0] == "keys":
            mode &= 0o600
        os.chmod(path, mode)
    return sorted(unmatched)


def _restore_files(backup: Path, home: Path, work: Path, out: TextIO, loaded: Any) -> int:
    """The plain backup in ``backup`` (its manifest as ``loaded``) copied into ``work/home``, each file
    checked on the bytes copied, then the copied record's audit trail checked there, and only then moved
    to ``home`` (the body of :func:`backup_restore`, ``home`` checked new or empty by it; ``work`` from
    :func:`_restoring`). On any problem nothing is moved: a home that does not verify is never left to be
    started."""
    manifest, why = _read_manifest(backup, loaded)
    if manifest is None:
        out.write(f"restore refused: {why}\n")
        return 1
    present = {rel for rel in _files(backup) if rel != MANIFEST}
    staged = work / STAGED
    problems: list[str] = []
    unmatched: list[str] = []
    try:
        _private_folder(staged)
        for rel in sorted(manifest["files"]):
            if rel not in present:
                problems.append(f"{_named(rel)}: missing")
                continue
            # After a first problem the rest is only read, to name every problem.
            problem = _copy_checked(backup / rel, None if problems else staged / rel, manifest["files"][rel])
            if problem is not None:
                problems.append(f"{_named(rel)}: {problem}")
        report = None
        if not problems:
            problems, report = _record_problems(staged, manifest)
        if not problems:
            target = Path(os.path.realpath(home))
            unmatched = _give_owners(staged, manifest, home_too=not target.is_dir())
            _move_into_place(staged, target)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise BackupRefused(
            f"{home} could not be written ({reason}); what was copied was removed. Nothing was restored."
        ) from e
    if problems:
        out.write(
            f"restore refused: the backup is BROKEN ({len(problems)} problem(s)); nothing was restored\n"
        )
        for line in problems:
            out.write(f"  {line}\n")
        return 1
    out.write(f"restored {len(manifest['files'])} files into {home}, from a backup made {_made(manifest)}")
    if report is not None:
        out.write(f"; audit trail intact up to head seq {report.head_seq} sha256 {report.head_hash}")
    out.write(".\n")
    for note in _restore_notes(manifest):
        out.write(f"Note: {note}\n")
    if unmatched:
        out.write(
            f"Note: this machine has no {', '.join(_named(name) for name in unmatched)}; their files keep "
            "the ids the backup lists. Give them to the server's service user (chown) before starting it.\n"
        )
    out.write(f"Start the processes with DXASSIST_HOME={home}, then run `dxassist audit verify`.\n")
    return 0
