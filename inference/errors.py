"""The root of the errors :mod:`inference` raises on purpose.

Each subpackage keeps one small hierarchy (``DicomRejected``, ``RecordError``, ``SecurityError``, ...),
each rooted here, so a caller can tell "dxassist refused or failed, and said why" from a bug with one
``except InferenceError``. The errors name a stable ``code`` where a caller needs one; none carries an
HTTP status: :mod:`inference.api` alone maps them to HTTP (``inference/api/_errors.py``), the DIMSE
listener to DIMSE statuses, the CLI to exit codes.
"""

from __future__ import annotations

__all__ = ["InferenceError"]


class InferenceError(Exception):
    """Root of every error the :mod:`inference` package raises deliberately."""
