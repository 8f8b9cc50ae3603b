"""The root of the errors raised by :mod:`inference.services` itself (most come from the packages below)."""

from __future__ import annotations

from inference.errors import InferenceError


class ServiceError(InferenceError):
    """Root of the errors :mod:`inference.services` raises: an operation it cannot carry out."""


class PictureUnreadable(ServiceError):
    """A result's stored rendering cannot be read, so the picture asked for cannot be drawn.

    The server's own data is damaged (not the caller's request): the access is audited ``failure`` and
    the API answers 500 ``rendering_unreadable``; the result and its findings are unaffected.
    """
