"""Errors of the priority policy."""

from __future__ import annotations


class PolicyError(ValueError):
    """A site policy file is unreadable or holds an unknown key, finding code, band or priority."""
