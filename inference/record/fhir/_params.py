"""The parameters of a FHIR search that the server applies (resource searches and AuditEvent alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from inference.record._errors import InvalidSearch

COMMON_PARAMS: Final[frozenset[str]] = frozenset({"_count", "_offset", "_format"})
"""Parameters every search type takes besides its own."""
SUMMARIES: Final[frozenset[str]] = frozenset({"count", "false"})
"""The ``_summary`` values served: ``count`` (the total alone, as ``_count=0``) and ``false`` (whole
resources, which is what every search returns). Others (``true``, ``text``, ``data``) are unsupported."""


def capability_params(max_count: int) -> list[dict[str, str]]:
    """The CapabilityStatement ``searchParam`` entries of the parameters every search takes besides its
    own (:data:`COMMON_PARAMS` but ``_format``, which the statement's ``format`` says, and ``_summary``): a
    client reads there what it may send."""
    return [
        {"name": "_count", "type": "number", "documentation": f"Page size, at most {max_count}"},
        {"name": "_offset", "type": "number", "documentation": "Matches skipped before the page"},
        {
            "name": "_summary",
            "type": "token",
            "documentation": "count (the total alone) or false (whole resources, as without it)",
        },
    ]


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
    asked for ``Prefer: handling=strict``; then it is an error. ``_summary`` is supported with the values
    of :data:`SUMMARIES` (see :func:`page_size`). A repeated supported parameter (other than
    ``repeatable``) is always an error: which value would apply is not defined.

    Raises:
        InvalidSearch: ``strict`` and an unsupported parameter, or a repeated supported one.
    """

    def served(name: str, value: str) -> bool:
        return name in supported or (name == "_summary" and value in SUMMARIES)

    unknown = sorted({name for name, value in pairs if not served(name, value)})
    if unknown and strict:
        raise InvalidSearch(
            f"Search parameter(s) {', '.join(unknown)} not supported for {resource_type} "
            f"(Prefer: handling=strict); supported are {', '.join(sorted(supported))} "
            f"and _summary={' or '.join(sorted(SUMMARIES))}."
        )
    kept = [(name, value) for name, value in pairs if served(name, value)]
    names = [name for name, _ in kept]
    repeated = sorted({name for name in names if name not in repeatable and names.count(name) > 1})
    if repeated:
        raise InvalidSearch(
            f"Search parameter(s) {', '.join(repeated)} appear more than once; give each at most once."
        )
    return kept


def page_size(raw: str | None, default: int, high: int, *, summary: str | None = None) -> int:
    """The page size a ``_count`` asks for, at most ``high``: FHIR R4 (search, ``_count``) lets a server
    return fewer than asked, never more, so a larger one is served as ``high`` (see :func:`with_count`).
    ``_summary=count`` (``summary``) asks for the total alone: 0, whatever ``_count`` says.

    Raises:
        InvalidSearch: Not a non-negative integer.
    """
    if summary == "count":
        return 0
    if raw is None:
        return default
    # isascii: str.isdigit() also accepts '²', which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidSearch(f"Search parameter _count must be an integer from 0 (pages hold at most {high}).")
    return min(int(raw), high)


def with_count(query: Sequence[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """``query`` with its ``_count`` as served: the links show the page size applied, not the one asked
    (a ``_summary=count`` query keeps its ``_count``: the summary says why the page is empty)."""
    if ("_summary", "count") in query:
        return list(query)
    return [(name, str(count) if name == "_count" else value) for name, value in query]
