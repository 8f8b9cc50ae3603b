"""The root of the errors raised by :mod:`inference.services` itself (most come from the packages below)."""

from __future__ import annotations

from inference.errors import InferenceError


class ServiceError(InferenceError):
    """Root of the errors :mod:`inference.services` raises: an operation it cannot carry out."""
