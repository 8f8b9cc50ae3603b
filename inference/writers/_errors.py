"""Errors raised while building the DICOM objects sent back to a PACS."""

from __future__ import annotations

from inference.errors import InferenceError


class WriterError(InferenceError, ValueError):
    """Root of the writers' errors: the inputs cannot become a valid DICOM object."""


class InvalidUID(WriterError):
    """A UID (org root, or one taken from the source) is not a valid DICOM UID."""


class InvalidFinding(WriterError):
    """A finding handed to a writer is inconsistent (probability, box or heatmap out of range)."""
