"""Study grouping by quiet period: instances land in one folder per study, analysed once the study is stable.

A PACS sends a study as a stream of C-STORE requests, possibly over several associations, with no "end
of study" message. As Orthanc's ``StableAge``, a study counts as complete once no instance arrived for
``quiet_seconds``. Folders live under ``<incoming>/<study uid>/<sop uid>.dcm``; every file is fsynced
before the sender is told it was stored, and folders left by a previous run are picked up at start.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_UID: Final = re.compile(r"[0-9]+(\.[0-9]+)*")
SENDER_FILE: Final = "sender.txt"
_SUFFIX: Final = ".dcm"


def safe_name(uid: str) -> str:
    """A file name for a UID: the UID itself when it is digits and dots, else a hash of it."""
    if len(uid) <= 64 and _UID.fullmatch(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


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
        incoming.mkdir(parents=True, exist_ok=True)

    def folder(self, study_instance_uid: str) -> Path:
        """The folder of a study."""
        return self.incoming / safe_name(study_instance_uid)

    def recover(self) -> list[str]:
        """Schedule the folders left by a previous run (their quiet period starts now); return their keys."""
        found = []
        now = self._clock()
        with self._lock:
            for folder in sorted(self.incoming.iterdir()):
                if folder.is_dir() and any(folder.glob(f"*{_SUFFIX}")):
                    self._last.setdefault(folder.name, now)
                    found.append(folder.name)
        return found

    def store(
        self, *, study_instance_uid: str, sop_instance_uid: str, data: bytes, sender: str | None
    ) -> Path:
        """Write one instance durably and restart its study's quiet period; return the file written."""
        folder = self.folder(study_instance_uid)
        path = folder / f"{safe_name(sop_instance_uid)}{_SUFFIX}"
        write_durably(path, data)
        if sender is not None and not (folder / SENDER_FILE).exists():
            write_durably(folder / SENDER_FILE, sender.encode("ascii", "replace"))
        with self._lock:
            self._last[folder.name] = self._clock()
        return path

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
            for path in study.files:
                path.unlink(missing_ok=True)
            (study.folder / SENDER_FILE).unlink(missing_ok=True)
            for leftover in study.folder.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)
            try:
                study.folder.rmdir()
            except OSError:
                pass  # an instance is being written right now; the next quiet period takes it

    def retry_later(self, study: StableStudy) -> None:
        """Keep a study whose analysis could not run (no model, database down) for another quiet period."""
        with self._lock:
            self._busy.discard(study.key)
            self._last[study.key] = self._clock()
