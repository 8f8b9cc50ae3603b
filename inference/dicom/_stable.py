"""Study grouping by quiet period: instances land in one folder per study, analysed once the study is stable.

A PACS sends a study as a stream of C-STORE requests, possibly over several associations, with no "end
of study" message. As Orthanc's ``StableAge``, a study counts as complete once no instance arrived for
``quiet_seconds``. Folders live under ``<incoming>/<node>_<study uid>/<sop uid>.dcm`` (:func:`study_key`:
the calling node's tag, then the study), so two nodes sending the same Study Instance UID (two facilities,
or a UID collision) never add to or replace each other's instances; every file is fsynced before the
sender is told it was stored, and folders left by a previous run are picked up at start (those of the
earlier layout, ``<incoming>/<study uid>``, too: see :meth:`StudyCollector.recover`).

A study whose analysis keeps failing is not tried forever: its attempts are counted in the folder
(``attempts.txt``, so a restart does not reset them), and after the last one the folder moves to the
dead-letter folder (``DXASSIST_HOME/dead-letter/studies/<study>``) with a ``dead-letter.json`` saying why;
:func:`release_study` (``dxassist dead-letter retry``) moves it back for a fresh set of attempts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_UID: Final = re.compile(r"[0-9]+(\.[0-9]+)*")
SENDER_FILE: Final = "sender.txt"
ATTEMPTS_FILE: Final = "attempts.txt"
REASON_FILE: Final = "dead-letter.json"
DEAD_STUDIES_DIR: Final = Path("dead-letter") / "studies"
"""Where studies that ran out of attempts go, relative to ``DXASSIST_HOME``."""
_SUFFIX: Final = ".dcm"
_STORE_TRIES: Final = 3
"""How often an instance is put into its study's folder when the folder is removed under it (see
:meth:`StudyCollector.store_file`): once per finished study it could race with, a bound all the same."""


def safe_name(uid: str) -> str:
    """A file name for a UID: the UID itself when it is digits and dots, else a hash of it."""
    if len(uid) <= 64 and _UID.fullmatch(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


def study_key(study_instance_uid: str, sender: str | None) -> str:
    """The spool folder name of a study sent by ``sender`` (the calling AE title; None: no node).

    ``n`` and 12 hex digits of a hash of the AE title (any characters it holds stay out of the path),
    ``_``, then :func:`safe_name` of the UID: at most 78 characters, no ``~`` (the dead-letter folder's
    suffix) and no leading dot. Without a sender the name is the UID's alone, as before.
    """
    study = safe_name(study_instance_uid)
    return study if sender is None else _node_folder(study, sender)


def _node_folder(study: str, sender: str) -> str:
    """The folder name of the study folder name ``study`` (a :func:`safe_name`) sent by ``sender``."""
    return f"n{hashlib.sha256(sender.encode('utf-8', 'replace')).hexdigest()[:12]}_{study}"


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it survives a power cut once this returns.

    The bytes go to a temporary file that is fsynced, renamed into place, and the folder is fsynced
    too (a rename is durable only once its directory entry is).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StableStudy:
    """A study whose quiet period has passed: its folder and the files to analyse."""

    key: str
    folder: Path
    files: tuple[Path, ...]
    sender: str | None
    snapshot: float


class StudyCollector:
    """Stores received instances per study and tells which studies are stable.

    Thread-safe: association threads call :meth:`store`, the analysis loop calls :meth:`stable`
    and :meth:`done`.

    Args:
        incoming: Root folder of the received instances (``DXASSIST_HOME/incoming``).
        quiet_seconds: Quiet period after the last instance of a study.
        clock: Monotonic clock (seconds).
    """

    def __init__(
        self, incoming: Path, *, quiet_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.incoming = incoming
        self.quiet_seconds = quiet_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._busy: set[str] = set()
        # How often :meth:`keep` must be called while a study is analysed (None: never).
        self.lease_seconds: float | None = None
        incoming.mkdir(parents=True, exist_ok=True)

    def folder(self, study_instance_uid: str, sender: str | None = None) -> Path:
        """The folder of a study sent by ``sender`` (see :func:`study_key`)."""
        return self.incoming / study_key(study_instance_uid, sender)

    def recover(self) -> list[str]:
        """Schedule the folders left by a previous run (their quiet period starts now); return their keys.

        A folder of the earlier layout (named by the study alone, its node in ``sender.txt``) is renamed
        to its node's folder first, so instances of that study arriving after the restart join it; one
        whose node's folder exists already is analysed as it is.
        """
        found = []
        now = self._clock()
        with self._lock:
            for folder in sorted(self.incoming.iterdir()):
                folder = _upgrade_layout(folder)
                if folder.is_dir() and any(folder.glob(f"*{_SUFFIX}")):
                    self._last.setdefault(folder.name, now)
                    found.append(folder.name)
        return found

    def full(self, *, study_instance_uid: str, sop_instance_uid: str, sender: str | None, limit: int) -> bool:
        """Whether the study's folder holds ``limit`` instances already, this one not among them (a resend
        of an instance it holds replaces its file: not one more)."""
        folder = self.folder(study_instance_uid, sender)
        try:
            held = {path.name for path in folder.glob(f"*{_SUFFIX}")}
        except OSError:
            return False
        return len(held) >= limit and f"{safe_name(sop_instance_uid)}{_SUFFIX}" not in held

    def store(
        self, *, study_instance_uid: str, sop_instance_uid: str, data: bytes, sender: str | None
    ) -> Path:
        """Write one instance durably and restart its study's quiet period; return the file written.

        Made again when its study's folder is removed under it, as :meth:`store_file` is.

        Raises:
            OSError: The file could not be written (the disk is full or gone).
        """
        folder = self.folder(study_instance_uid, sender)
        path = folder / f"{safe_name(sop_instance_uid)}{_SUFFIX}"

        def write() -> None:
            write_durably(path, data)

        self._into_folder(folder, write, sender)
        return path

    def store_file(
        self, *, study_instance_uid: str, sop_instance_uid: str, source: Path, sender: str | None
    ) -> Path:
        """Move a received file (on the same file system) into its study durably; return its new path.

        The file is fsynced, renamed into place and its folder fsynced: nothing is copied, so an instance
        never needs memory for its bytes here.

        The folder of a study just finished is removed once it holds no instance (:meth:`done`, by the
        analysis loop, or another listener instance on a shared spool), possibly between its making here
        and the move into it: the move then finds no folder and is made again in a new one, so an
        instance that arrives as its study is cleared is kept (a study of its own, analysed after its
        quiet period), never refused for it.

        Raises:
            OSError: The file could not be kept (the disk is full or gone, or ``source`` is gone).
        """
        folder = self.folder(study_instance_uid, sender)
        path = folder / f"{safe_name(sop_instance_uid)}{_SUFFIX}"

        def move() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            with open(source, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(source, path)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        def gone() -> bool:
            return not source.exists()  # the received file itself: nothing to move

        self._into_folder(folder, move, sender, gone=gone)
        return path

    def _into_folder(
        self,
        folder: Path,
        put: Callable[[], None],
        sender: str | None,
        *,
        gone: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run ``put`` (it makes ``folder`` and puts an instance in it) until the folder stays, note the
        sender and restart the study's quiet period.

        A folder removed between its making and ``put``'s write into it (:func:`remove_study_files`) makes
        the write fail with FileNotFoundError: it is made again, at most :data:`_STORE_TRIES` times in all,
        unless ``gone`` says the failure was not the folder's.

        Raises:
            OSError: ``put`` failed otherwise, or every time.
        """
        for attempt in range(1, _STORE_TRIES + 1):
            try:
                put()
                break
            except FileNotFoundError:
                if attempt == _STORE_TRIES or gone():
                    raise
        # The instance holds the folder now (it is removed only once it holds none), but a study finished
        # meanwhile clears what else is in it: a sender file being written may be taken with it.
        for attempt in range(1, _STORE_TRIES + 1):
            if sender is None or (folder / SENDER_FILE).exists():
                break
            try:
                write_durably(folder / SENDER_FILE, sender.encode("ascii", "replace"))
                break
            except FileNotFoundError:
                if attempt == _STORE_TRIES:
                    raise
        self._arrived(folder.name)

    def _arrived(self, key: str) -> None:
        """An instance of study ``key`` is on disk: its quiet period restarts."""
        with self._lock:
            self._last[key] = self._clock()

    def keep(self, study: StableStudy) -> bool:
        """Renew this listener's hold on a study it is analysing; False when it lost it. Nothing to renew
        here (one process holds every study); a collector sharing studies with other listeners renews
        its lease (``lease_seconds`` says how often that is needed; None: never)."""
        return True

    def pending(self) -> int:
        """How many studies are waiting for their quiet period or being analysed."""
        with self._lock:
            return len(self._last)

    def stable(self) -> list[StableStudy]:
        """Studies whose quiet period has passed and that are not being analysed; they become busy."""
        now = self._clock()
        out = []
        with self._lock:
            for key, last in sorted(self._last.items(), key=lambda item: item[1]):
                if key in self._busy or now - last < self.quiet_seconds:
                    continue
                folder = self.incoming / key
                files = tuple(sorted(folder.glob(f"*{_SUFFIX}")))
                if not files:
                    del self._last[key]
                    continue
                sender_file = folder / SENDER_FILE
                sender = sender_file.read_text("ascii", "replace").strip() if sender_file.exists() else None
                self._busy.add(key)
                out.append(StableStudy(key=key, folder=folder, files=files, sender=sender, snapshot=last))
        return out

    def done(self, study: StableStudy, *, remove: bool) -> None:
        """Finish a study: with ``remove``, delete its files unless new instances arrived meanwhile.

        An instance that arrived during the analysis restarts the quiet period, and the study is analysed
        again with every instance (a new result for the grown study); its files are then kept.
        """
        with self._lock:
            self._busy.discard(study.key)
            grown = self._last.get(study.key, study.snapshot) != study.snapshot
            if not grown:
                self._last.pop(study.key, None)
        if remove and not grown:
            remove_study_files(study)

    def retry_later(self, study: StableStudy, *, delay: float | None = None) -> None:
        """Keep a study whose analysis could not run (no model, database down) for ``delay`` seconds
        (another quiet period when None)."""
        wait = self.quiet_seconds if delay is None else max(delay, 0.0)
        with self._lock:
            self._busy.discard(study.key)
            # stable() takes a study once now - last >= quiet_seconds.
            self._last[study.key] = self._clock() + wait - self.quiet_seconds

    def count_attempt(self, study: StableStudy) -> int:
        """Count one failed analysis of ``study`` (kept in its folder across restarts); return the total."""
        path = study.folder / ATTEMPTS_FILE
        try:
            attempts = int(path.read_text("ascii").strip() or "0")
        except (OSError, ValueError):
            attempts = 0
        attempts += 1
        write_durably(path, str(attempts).encode("ascii"))
        return attempts

    def rescan(self) -> list[str]:
        """Take up folders that appeared in ``incoming`` without a C-STORE (a dead letter released by an
        operator); return their keys."""
        found = []
        now = self._clock()
        with self._lock:
            for folder in sorted(self.incoming.iterdir()):
                if folder.name in self._last or not folder.is_dir() or not any(folder.glob(f"*{_SUFFIX}")):
                    continue
                self._last[folder.name] = now
                found.append(folder.name)
        return found

    def quarantine(self, study: StableStudy, dead_root: Path, reason: dict[str, Any]) -> Path:
        """Move a study out of ``incoming`` into ``dead_root`` with ``reason`` (a dead letter).

        Instances that arrived during the last attempt go with it: the study is one unit.
        """
        with self._lock:
            self._busy.discard(study.key)
            self._last.pop(study.key, None)
            return move_to_dead_letters(study, dead_root, reason)


def _upgrade_layout(folder: Path) -> Path:
    """``folder`` renamed to :func:`study_key` of its study and sender when it has the earlier layout
    (a study's name alone, with a ``sender.txt``); else ``folder`` itself."""
    name = folder.name
    sender_file = folder / SENDER_FILE
    if not folder.is_dir() or "_" in name or name.startswith(".") or not sender_file.is_file():
        return folder
    try:
        sender = sender_file.read_text("ascii", "replace").strip()
    except OSError:
        return folder
    target = folder.with_name(_node_folder(name, sender))  # the name is safe_name(uid) already
    if target.exists():
        return folder
    try:
        os.replace(folder, target)
    except OSError:
        return folder
    return target


def remove_study_files(study: StableStudy) -> None:
    """Delete the analysed files of a study, and its folder once nothing else is in it.

    An instance of the study may be stored at any moment (:meth:`StudyCollector.store_file`: moved in,
    then the sender file written unless it is there). So the sender file is first taken away under a name
    of its own, and only then is the folder looked at: an instance found there gets it back (it starts a
    new study, which needs its sender); one moved in later finds no sender file and writes its own.
    """
    for path in study.files:
        path.unlink(missing_ok=True)
    sender = study.folder / SENDER_FILE
    taken = study.folder / f".{SENDER_FILE}.{os.getpid()}.{threading.get_ident()}.aside.tmp"
    aside: Path | None = taken
    try:
        os.rename(sender, taken)
    except FileNotFoundError:
        aside = None
    except OSError:
        return  # left as it is: the next finished study of the folder removes it
    if any(study.folder.glob(f"*{_SUFFIX}")):
        # An instance arrived after the study was finished (it starts a new one): it needs the sender
        # (the same node's, whichever of the two files stays).
        if aside is not None:
            with contextlib.suppress(OSError):
                os.replace(aside, sender)
        return
    if aside is not None:
        aside.unlink(missing_ok=True)
    (study.folder / ATTEMPTS_FILE).unlink(missing_ok=True)
    for leftover in study.folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    try:
        study.folder.rmdir()
    except OSError:
        pass  # an instance is being written right now; the next quiet period takes it


def move_to_dead_letters(study: StableStudy, dead_root: Path, reason: dict[str, Any]) -> Path:
    """Move a study's folder into ``dead_root`` with ``reason``; return where it went."""
    target = dead_root / study.key
    if target.exists():
        # Dead-lettered before and released into a new folder meanwhile: keep both.
        target = dead_root / f"{study.key}~{time.time_ns()}"
    dead_root.mkdir(parents=True, exist_ok=True)
    for leftover in study.folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    shutil.move(str(study.folder), str(target))
    write_durably(target / REASON_FILE, json.dumps(reason, indent=2, sort_keys=True).encode("utf-8"))
    return target


def dead_studies(dead_root: Path) -> list[dict[str, Any]]:
    """The studies in the dead-letter folder: ``{key, study, instances, sender, ...reason}``, oldest first.

    ``key`` is the folder's name (what ``release_study`` takes), ``study`` the study's part of it (its
    Study Instance UID, or the hash standing for a UID that cannot be a file name), without the node.
    """
    if not dead_root.is_dir():
        return []
    found = []
    for folder in dead_root.iterdir():
        if not folder.is_dir():
            continue
        try:
            reason = json.loads((folder / REASON_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            reason = {}
        sender_file = folder / SENDER_FILE
        found.append(
            {
                **(reason if isinstance(reason, dict) else {}),
                "key": folder.name,
                "study": folder.name.split("~", 1)[0].split("_", 1)[-1],
                "instances": sum(1 for _ in folder.glob(f"*{_SUFFIX}")),
                "sender": sender_file.read_text("ascii", "replace").strip() if sender_file.exists() else None,
            }
        )
    return sorted(found, key=lambda item: (str(item.get("dead_at", "")), item["key"]))


def count_dead_studies(dead_root: Path) -> int:
    """How many studies are in the dead-letter folder."""
    return sum(1 for folder in dead_root.iterdir() if folder.is_dir()) if dead_root.is_dir() else 0


def release_study(dead_root: Path, incoming: Path, key: str) -> bool:
    """Move a dead-lettered study back to ``incoming`` for a fresh set of attempts; False if unknown.

    The listener takes it up within a few seconds (it rescans ``incoming``), after its quiet period.
    The study's reason (``dead-letter.json``) and attempt count are removed only once every file is
    back: a move that fails puts the files it had moved back in the dead-letter folder and raises, so
    the study stays listed with its error code.

    Raises:
        OSError: The files could not be moved back (the study stays a dead letter).
    """
    if not key or "/" in key or "\\" in key or key.startswith("."):
        return False
    folder = dead_root / key
    if not folder.is_dir():
        return False
    target = incoming / key.split("~", 1)[0]
    kept = {REASON_FILE, ATTEMPTS_FILE}
    moved: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.iterdir()):
            if path.name not in kept:
                os.replace(path, target / path.name)
                moved.append(path)
    except OSError:
        # Half a study in incoming/ would be analysed as a study of its own: put back what went.
        for path in moved:
            with contextlib.suppress(OSError):
                os.replace(target / path.name, path)
        raise
    for name in kept:
        (folder / name).unlink(missing_ok=True)
    folder.rmdir()
    return True
