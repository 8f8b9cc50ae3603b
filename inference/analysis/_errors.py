"""Errors of the analysis: one root, subclassing ``ValueError`` (they are about the input image)."""

from __future__ import annotations

from inference.errors import InferenceError


class AnalysisError(InferenceError, ValueError):
    """Root of the analysis errors."""


class ImageUnusable(AnalysisError):
    """The decoded image cannot be prepared for the model (e.g. empty or not 2-D)."""


class ImageTooSmall(ImageUnusable):
    """The image is smaller than the model's input: the model would score an enlargement it never saw."""


class RenderingCorrupt(AnalysisError):
    """A stored display rendering or its class activation maps cannot be read back."""
