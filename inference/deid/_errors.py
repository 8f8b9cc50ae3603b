"""The root of the errors raised by :mod:`inference.deid`."""

from __future__ import annotations

from inference.errors import InferenceError


class DeidError(InferenceError):
    """Root of the errors :mod:`inference.deid` raises: an image it cannot de-identify safely."""
