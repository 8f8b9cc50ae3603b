"""Where the studies of a batch come from: a folder tree of DICOM files, or a DICOMweb server
(:mod:`inference.batch._dicomweb`).

A source is scanned once by the driver (headers only: the study each file belongs to) and read again,
study by study, on the Dask workers. Both must see the same archive: a shared file system mounted at the
same path, or the same DICOMweb server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inference.batch._errors import SourceError
from inference.dicom import DicomTooLarge, LazyInstances

if TYPE_CHECKING:
    from inference.batch._dicomweb import DicomWebSource


@dataclass(frozen=True)
class StudyRef:
    """One study of the archive, as a worker needs it to read the study again.

    Attributes:
        study_instance_uid: The StudyInstanceUID (a UID, not patient data; never printed).
        paths: Its files, for a folder source; empty for DICOMweb.
    """

    study_instance_uid: str
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scan:
    """What a scan of the source found.

    Attributes:
        studies: The studies, in a stable order (sorted by StudyInstanceUID).
        unreadable: Files that are not DICOM Part-10 or name no StudyInstanceUID (never analysed).
    """

    studies: tuple[StudyRef, ...]
    unreadable: int = 0


class FolderSource:
    """A folder tree of DICOM Part-10 files (any names, any depth), grouped by StudyInstanceUID.

    Args:
        root: The folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def describe(self) -> str:
        """The source as named in the summary (a folder path: no patient data)."""
        return str(self.root)

    def scan(self) -> Scan:
        """Read every file's header (no pixel data) and group the files by study.

        Raises:
            SourceError: The folder does not exist.
        """
        import pydicom
        from pydicom.errors import InvalidDicomError

        if not self.root.is_dir():
            raise SourceError(f"The archive folder {self.root} does not exist or is not a folder.")
        groups: dict[str, list[str]] = {}
        unreadable = 0
        for path in self._files():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                uid = str(ds.get("StudyInstanceUID", "") or "").strip()
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
                uid = ""
            if not uid:
                unreadable += 1
                continue
            groups.setdefault(uid, []).append(str(path))
        studies = tuple(StudyRef(uid, tuple(sorted(paths))) for uid, paths in sorted(groups.items()))
        return Scan(studies=studies, unreadable=unreadable)

    def _files(self) -> Iterator[Path]:
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()  # a stable order, so two scans of one archive list the studies alike
            for name in sorted(files):
                if not name.startswith("."):
                    yield Path(folder) / name

    def instance_uids(self, ref: StudyRef, *, max_instances: int) -> list[str] | None:
        """The SOPInstanceUIDs of the study's files (headers only); None when a file names none.

        Raises:
            DicomRejected: ``too_many_instances``: the study has more than ``max_instances`` files.
        """
        import pydicom

        _check_count(ref, max_instances)
        uids = []
        for path in ref.paths:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            except Exception:  # noqa: BLE001 - the analysis refuses the file properly, with its code
                return None
            uid = str(ds.get("SOPInstanceUID", "") or "")
            if not uid:
                return None
            uids.append(uid)
        return uids

    def read(self, ref: StudyRef, *, max_instance_bytes: int, max_instances: int) -> Sequence[bytes]:
        """The study's files, read lazily (as :func:`inference.dicom.read_study` asks for them).

        Raises:
            DicomRejected: ``too_many_instances``; later, on access, ``instance_too_large``.
        """
        _check_count(ref, max_instances)

        def load(path: str) -> bytes:
            # Checked before reading, so one huge file never sits in a worker's memory.
            if os.stat(path).st_size > max_instance_bytes:
                raise DicomTooLarge("instance_too_large")
            return Path(path).read_bytes()

        return LazyInstances(ref.paths, load)


def _check_count(ref: StudyRef, max_instances: int) -> None:
    if len(ref.paths) > max_instances:
        raise DicomTooLarge(
            "too_many_instances",
            f"The study has {len(ref.paths)} files, more than the limit of {max_instances} per study "
            "(DXASSIST_MAX_INSTANCES).",
        )


def open_source(text: str, *, page_size: int | None = None) -> FolderSource | DicomWebSource:
    """The source named on the command line: an ``http(s)://`` QIDO-RS URL, else a folder.

    Args:
        text: The URL or folder.
        page_size: Answers per QIDO-RS page of a DICOMweb source (``DXASSIST_BATCH_QIDO_PAGE_SIZE``);
            None for :data:`inference.batch._dicomweb.PAGE_SIZE`.
    """
    if text.startswith(("http://", "https://")):
        from inference.batch._dicomweb import PAGE_SIZE, DicomWebSource

        return DicomWebSource(text, page_size=page_size or PAGE_SIZE)
    return FolderSource(Path(text))
