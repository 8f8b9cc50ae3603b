"""Shared OpenAPI descriptions of error answers."""

from __future__ import annotations

from typing import Any

from inference.api.schemas import ErrorResponse


def errors(
    *statuses: int, extra: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses``: ``extra`` entries, then error statuses in the contract's error shape."""
    out: dict[int | str, dict[str, Any]] = dict(extra or {})
    out.update({status: {"model": ErrorResponse} for status in statuses})
    return out


AUTH = (401, 403)
