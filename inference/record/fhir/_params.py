"""The parameters of a FHIR search that the server applies (resource searches and AuditEvent alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from inference.record._errors import InvalidSearch

COMMON_PARAMS: Final[frozenset[str]] = frozenset({"_count", "_offset", "_format"})
"""Parameters every search type takes besides its own."""


def applied(
    resource_type: str,
    pairs: Sequence[tuple[str, str]],
    supported: frozenset[str] | set[str],
    *,
    strict: bool,
    repeatable: frozenset[str] = frozenset({"date"}),
) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a search that the server applies, in order.

    FHIR R4 (search 3.1.1.3.2): a server SHOULD ignore a parameter it does not support unless the client
    asked for ``Prefer: handling=strict``; then it is an error. A repeated supported parameter (other than
    ``repeatable``) is always an error: which value would apply is not defined.

    Raises:
        InvalidSearch: ``strict`` and an unsupported parameter, or a repeated supported one.
    """
    unknown = sorted({name for name, _ in pairs if name not in supported})
    if unknown and strict:
        raise InvalidSearch(
            f"Search parameter(s) {', '.join(unknown)} not supported for {resource_type} "
            f"(Prefer: handling=strict); supported are {', '.join(sorted(supported))}."
        )
    kept = [(name, value) for name, value in pairs if name in supported]
    names = [name for name, _ in kept]
    repeated = sorted({name for name in names if name not in repeatable and names.count(name) > 1})
    if repeated:
        raise InvalidSearch(
            f"Search parameter(s) {', '.join(repeated)} appear more than once; give each at most once."
        )
    return kept


def page_size(raw: str | None, default: int, high: int) -> int:
    """The page size a ``_count`` asks for, at most ``high``: FHIR R4 (search, ``_count``) lets a server
    return fewer than asked, never more, so a larger one is served as ``high`` (see :func:`with_count`).

    Raises:
        InvalidSearch: Not a non-negative integer.
    """
    if raw is None:
        return default
    # isascii: str.isdigit() also accepts '²', which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidSearch(f"Search parameter _count must be an integer from 0 (pages hold at most {high}).")
    return min(int(raw), high)


def with_count(query: Sequence[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """``query`` with its ``_count`` as served: the links show the page size applied, not the one asked."""
    return [(name, str(count) if name == "_count" else value) for name, value in query]
