"""The root of the errors :mod:`training` raises on purpose (bad data, bad configuration, missing extra)."""

from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(Exception):
    """Root of every error the :mod:`training` package raises deliberately."""
