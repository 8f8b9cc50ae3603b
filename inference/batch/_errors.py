"""Errors of batch scoring: one root, each a full sentence without patient data."""

from __future__ import annotations

from inference.errors import InferenceError


class BatchError(InferenceError):
    """Root of the errors of :mod:`inference.batch`: the run cannot start or cannot go on."""


class SourceError(BatchError):
    """The archive cannot be read: a missing folder, a DICOMweb server that does not answer."""


class ExtraMissing(BatchError):
    """Dask distributed (the ``batch`` extra) is not installed."""
