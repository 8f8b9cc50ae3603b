"""Errors of the priority policy."""

from __future__ import annotations

from inference.errors import InferenceError


class PolicyError(InferenceError, ValueError):
    """A site policy file is unreadable or holds an unknown key, finding code, band or priority."""
