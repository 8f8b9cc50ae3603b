"""The moves of a restore into a home that exists, written down before they are made: what a restore
killed between two of them (-9, the machine stopped) left is completed by the next ``dxassist`` command
on that home, or taken back by the next restore into it.

A restore into a new home is one rename, and needs none. Into a home that exists (an empty folder made
for it, kept with its owner, mode and ACLs; a mount point) each entry of the checked home is renamed into
it: ``moving.json`` in the staging folder, on disk before the first rename, names the home and the
entries. This module is light: every ``dxassist`` command reads it at start.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import shutil
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Final

from inference._backup.files import RESTORING, _private_file

JOURNAL: Final = "moving.json"
"""The file of the staging folder naming the home and the entries a restore moves into it."""


STAGED: Final = "home"
"""The folder of the staging folder the restored home is made and checked in."""


def fsync_folder(folder: Path) -> None:
    """Put ``folder``'s entries (renames, new names) on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_entries(work: Path, home: Path) -> None:
    """Move each entry of ``work/home`` (checked) into ``home`` (an existing, empty folder), the record
    last, once ``work/moving.json`` names them all (on disk first); the moves are put on disk, then the
    journal removed."""
    staged = work / STAGED
    names = sorted((p.name for p in staged.iterdir()), key=lambda name: (name == "record.db", name))
    with open(work / JOURNAL, "x", encoding="utf-8", opener=_private_file) as handle:
        handle.write(json.dumps({"home": str(home), "entries": names}))
        handle.flush()
        os.fsync(handle.fileno())
    fsync_folder(work)
    try:
        _move(staged, home, names)
    except BaseException:  # refused (something was written into the home meanwhile), interrupted
        _take_back(staged, home, names)
        # Nothing to complete any more: a command waiting for the staging folder's lock must not move
        # the rest in once the restore lets go of it (it said nothing was restored).
        with suppress(OSError):
            (work / JOURNAL).unlink()
        raise
    (work / JOURNAL).unlink()


def _move(staged: Path, home: Path, names: Iterable[str]) -> None:
    for name in names:
        if os.path.lexists(staged / name):
            os.rename(staged / name, home / name)
    fsync_folder(home)


def _take_back(staged: Path, home: Path, names: Iterable[str]) -> None:
    """Remove from ``home`` each of ``names`` moved there from ``staged`` (no longer staged): the home is
    as it was before the moves, empty."""
    for name in names:
        if os.path.lexists(home / name) and not os.path.lexists(staged / name):
            with suppress(OSError):
                _remove(home / name)
    with suppress(OSError):
        fsync_folder(home)


def _journal(work: Path, home: Path) -> list[str] | None:
    """The entries the restore staged in ``work`` was moving into ``home``; None when it was not (no
    journal: killed before its files were checked, or the journal names another home)."""
    try:
        written = json.loads((work / JOURNAL).read_text(encoding="utf-8"))
        names = written["entries"]
        if written["home"] != str(home) or not all(_entry_name(name) for name in names):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return list(names)


def _entry_name(name: object) -> bool:
    """Whether ``name`` is the name of an entry of a folder (no path, no ``..``)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _staging_folders(home: Path) -> list[Path]:
    """The staging folders of restores into ``home`` (beside it, or inside it)."""
    found: list[Path] = []
    for base, start in ((home.parent, f".{home.name}{RESTORING}"), (home, RESTORING)):
        if base.is_dir() and not base.is_symlink():
            found += sorted(base.glob(f"{glob.escape(start)}*"))  # the home's name is not a pattern
    return found


def finish_moves(home: Path, *, complete: bool, remove: bool) -> int:
    """Finish what restores into ``home`` killed while they moved its entries into place left: each
    staging folder with a journal that no running restore holds locked (with ``complete``, one whose moves
    are under way, by its restore or another command completing them, is waited for); ``complete``: the
    entries still staged are moved into the home (they were all checked), else those already moved are
    removed from it (the home is empty again). ``remove``: every unlocked staging folder is removed too (a
    restore killed before its moves: what it staged). Returns how many interrupted restores were finished.
    """
    home = Path(os.path.realpath(home))
    finished = 0
    for work in _staging_folders(home):
        if work.is_symlink() or not work.is_dir():
            if remove:
                work.unlink(missing_ok=True)
            continue
        try:
            fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # its own process removed it meanwhile, or it is not ours to read
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if not (complete and (work / JOURNAL).exists()):
                    continue  # in use by a running restore, still copying
                # Its moves are under way (the restore's last step, or another command completing them):
                # they take moments, and a command that went on now would start on a half-restored home.
                fcntl.flock(fd, fcntl.LOCK_EX)
            names = _journal(work, home)
            if names is not None:
                if complete:
                    _move(work / STAGED, home, names)
                else:
                    _take_back(work / STAGED, home, names)
                finished += 1
            if names is not None or remove:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            os.close(fd)
    return finished


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
