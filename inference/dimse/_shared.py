"""Grouping shared by several listener instances: the spool on shared storage, the state in the record.

With ``DXASSIST_DIMSE_GROUPING=database`` every ``dxassist listen`` instance writes what it receives into
the same spool (``DXASSIST_DIMSE_SPOOL`` on NFS or a ReadWriteMany volume) and keeps the grouping state
of :class:`~inference.dicom.StudyCollector` (last arrival, who is analysing, failed attempts) in the
record's ``dimse_studies`` table (:class:`inference.record._dimse_studies.StudyClaims`) instead of its
memory. So a study whose instances reach several instances, over several associations, is analysed once,
with all of them, after it has been quiet on every instance (the database's clock); an instance that dies
while analysing loses its lease and another one takes the study.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dicom import StudyCollector
from inference.dicom._stable import SENDER_FILE, StableStudy, move_to_dead_letters, remove_study_files
from inference.record import RecordError

if TYPE_CHECKING:
    from inference.record._dimse_studies import StudyClaims

_SUFFIX: Final = ".dcm"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")


def instance_name() -> str:
    """A name for this listener process, unique among instances (host, process id, random suffix)."""
    host = _UNSAFE.sub("-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SharedStudyCollector(StudyCollector):
    """A :class:`StudyCollector` whose grouping state is in the record, shared with other listeners.

    The files are handled as by the base class (one folder per study in the shared spool); what changes
    is who decides when a study is quiet and who analyses it. Database failures reach the association
    threads as ``OSError`` (the sender is told to try again later, the file is kept and registered by a
    later rescan) and the analysis loop as :class:`RecordError`.

    Args:
        incoming: ``<spool>/incoming``, shared by every instance.
        quiet_seconds: Quiet period after the last instance of a study, on every instance.
        claims: The record's ``dimse_studies`` concern.
        owner: This instance's name (:func:`instance_name`), written in its claims.
        lease_seconds: How long a claim lasts without renewal.
    """

    def __init__(
        self, incoming: Path, *, quiet_seconds: float, claims: StudyClaims, owner: str, lease_seconds: float
    ) -> None:
        super().__init__(incoming, quiet_seconds=quiet_seconds)
        self._claims = claims
        self.owner = owner
        self.lease_seconds = lease_seconds

    def _arrived(self, key: str) -> None:
        try:
            self._claims.arrived(key)
        except RecordError as e:
            raise OSError(str(e)) from e

    def _folders(self) -> list[str]:
        return sorted(
            folder.name
            for folder in self.incoming.iterdir()
            if folder.is_dir() and not folder.name.startswith(".") and any(folder.glob(f"*{_SUFFIX}"))
        )

    def recover(self) -> list[str]:
        """Queue the spool's folders that no instance has queued; return every folder waiting."""
        found = self._folders()
        self._claims.register(found)
        return found

    def rescan(self) -> list[str]:
        """Queue folders that appeared without a C-STORE (a released dead letter); return them."""
        return self._claims.register(self._folders())

    def pending(self) -> int:
        return self._claims.count()

    def stable(self) -> list[StableStudy]:
        """Claim the next quiet study nobody holds (at most one: see ``StudyClaims.claim_next``)."""
        claim = self._claims.claim_next(
            owner=self.owner, quiet_seconds=self.quiet_seconds, lease_seconds=self.lease_seconds or 60.0
        )
        if claim is None:
            return []
        folder = self.incoming / claim.key
        files = tuple(sorted(folder.glob(f"*{_SUFFIX}"))) if folder.is_dir() else ()
        if not files:
            # Analysed and removed by another instance, or moved away: nothing left to do.
            self._claims.finish(key=claim.key, owner=self.owner, generation=claim.generation)
            return []
        sender_file = folder / SENDER_FILE
        sender = sender_file.read_text("ascii", "replace").strip() if sender_file.exists() else None
        return [
            StableStudy(
                key=claim.key, folder=folder, files=files, sender=sender, snapshot=float(claim.generation)
            )
        ]

    def keep(self, study: StableStudy) -> bool:
        return self._claims.renew(key=study.key, owner=self.owner, lease_seconds=self.lease_seconds or 60.0)

    def done(self, study: StableStudy, *, remove: bool) -> None:
        """Finish the claimed generation; the files go only when nothing arrived since the claim (else
        the grown study is analysed again, with every instance, after another quiet period)."""
        finished = self._claims.finish(key=study.key, owner=self.owner, generation=int(study.snapshot))
        if remove and finished:
            remove_study_files(study)

    def retry_later(self, study: StableStudy, *, delay: float | None = None) -> None:
        wait = self.quiet_seconds if delay is None else max(delay, 0.0)
        self._claims.release(key=study.key, owner=self.owner, delay_seconds=wait)

    def count_attempt(self, study: StableStudy) -> int:
        """Count one failed analysis in the record (every instance sees the same count)."""
        try:
            return self._claims.count_attempt(key=study.key)
        except RecordError as e:
            raise OSError(str(e)) from e

    def quarantine(self, study: StableStudy, dead_root: Path, reason: dict[str, Any]) -> Path:
        target = move_to_dead_letters(study, dead_root, reason)
        self._claims.forget(key=study.key, owner=self.owner)
        return target
