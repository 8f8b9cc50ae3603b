"""Batch scoring of a DICOM archive (a folder tree or a DICOMweb server) on Dask distributed.

``dxassist batch score SOURCE`` scans the archive, scores each study on a Dask worker through the same
analysis as the API (results in the same record, same idempotency) and prints a summary. Dask is the
``batch`` extra: nothing here imports it until a run starts.
"""

from __future__ import annotations

from inference.batch._dicomweb import DicomWebSource
from inference.batch._errors import BatchError, ExtraMissing, SourceError
from inference.batch._run import Summary, default_workers, score_archive
from inference.batch._sources import FolderSource, Scan, StudyRef, open_source

__all__ = [
    "BatchError",
    "DicomWebSource",
    "ExtraMissing",
    "FolderSource",
    "Scan",
    "SourceError",
    "StudyRef",
    "Summary",
    "default_workers",
    "open_source",
    "score_archive",
]
