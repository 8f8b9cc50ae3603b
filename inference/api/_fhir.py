"""HTTP semantics of the FHIR views: the formats served (JSON only), the ``Prefer: handling`` header, and
a read's validators (``ETag``, ``Last-Modified``) with the conditional read they answer (RFC 7232)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from inference.api._errors import ApiError

#: ``_format`` values and media types that mean FHIR JSON (R4 http 3.1.0.1.10 lists the short forms).
_JSON: Final = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
#: Media ranges of an ``Accept`` header that JSON satisfies.
_JSON_RANGES: Final = _JSON | {"*/*", "application/*"}


class NotAcceptable(ApiError):
    """The client asked for a format the FHIR views do not serve (HTTP 406)."""

    def __init__(self, message: str) -> None:
        super().__init__(406, "not_acceptable", message)


def _media_ranges(header: str) -> list[tuple[str, float]]:
    """``(media range, q)`` of each element of an ``Accept`` header (RFC 9110 12.5.1); q is 0 for a range
    that asks for another FHIR version than the one served (``fhirVersion``, see :func:`_other_version`)."""
    out: list[tuple[str, float]] = []
    for element in header.split(","):
        media, *params = (part.strip() for part in element.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        out.append((media.lower(), 0.0 if _other_version(params) else q))
    return out


def _other_version(params: list[str]) -> bool:
    """Whether media type parameters ask for a FHIR version other than R4 (``fhirVersion=4.0``; FHIR
    versioning: the major.minor version): an R4B or R5 client must not take these resources for its own."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "fhirversion":
            major_minor = ".".join(value.strip().strip('"').split(".")[:2])
            return major_minor != "4.0"
    return False


def _format_type(value: str) -> str:
    """The media type a ``_format`` value names. A ``+`` written unencoded in the URL
    (``_format=application/fhir+json``, as the FHIR specification prints it) arrives as a space: no media
    type contains one, so it is read back as the ``+``."""
    media, *params = (part.strip() for part in value.split(";"))
    if _other_version(params):
        return ""
    return media.replace(" ", "+").lower()


# Both dependencies are ``async def`` (pure header and query parsing): FastAPI would run a plain ``def``
# one in a worker thread, a hop per request.
async def negotiate_format(request: Request) -> None:
    """Refuse with 406 a ``_format`` or ``Accept`` that JSON cannot satisfy (XML, Turtle, HTML only).

    ``_format`` overrides ``Accept`` (FHIR R4 http 3.1.0.1.10). No ``Accept``, ``*/*`` or any JSON type
    with a non-zero q is served.

    Raises:
        NotAcceptable: The client accepts no format this server serves.
    """
    wanted = request.query_params.getlist("_format")
    if wanted:
        refused = [value for value in wanted if _format_type(value) not in _JSON]
        if refused:
            raise NotAcceptable(
                "This FHIR server serves FHIR R4 (4.0) JSON only; _format must be json or "
                "application/fhir+json."
            )
        return
    header = request.headers.get("accept")
    if header is None or not header.strip():
        return
    if not any(media in _JSON_RANGES and q > 0 for media, q in _media_ranges(header)):
        raise NotAcceptable(
            "This FHIR server serves FHIR R4 (4.0) JSON only; accept application/fhir+json (or */*)."
        )


async def strict_handling(request: Request) -> bool:
    """Whether the client sent ``Prefer: handling=strict`` (unsupported search parameters are errors)."""
    for header in request.headers.getlist("prefer"):
        for preference in header.replace(";", ",").split(","):
            name, _, value = preference.partition("=")
            if name.strip().lower() == "handling" and value.strip().strip('"').lower() == "strict":
                return True
    return False


StrictHandling = Annotated[bool, Depends(strict_handling)]


def validators(resource: Mapping[str, Any]) -> dict[str, str]:
    """The headers that identify the version of a resource served (FHIR R4 http 3.1.0.3): ``ETag``
    ``W/"<meta.versionId>"`` and ``Last-Modified``, its ``meta.lastUpdated`` as an HTTP-date (to the
    second, as HTTP dates are)."""
    meta = resource.get("meta", {})
    headers: dict[str, str] = {}
    if meta.get("versionId"):
        headers["ETag"] = f'W/"{meta["versionId"]}"'
    updated = _instant(meta.get("lastUpdated"))
    if updated is not None:
        headers["Last-Modified"] = format_datetime(updated, usegmt=True)
    return headers


def not_modified(request: Request, resource: Mapping[str, Any]) -> bool:
    """Whether a read's conditional headers say the caller holds the version served (RFC 7232 3.2, 3.3):
    ``If-None-Match`` naming its version (weak comparison; ``*`` matches any resource on file), else, when
    there is no ``If-None-Match``, an ``If-Modified-Since`` at or after its ``meta.lastUpdated`` (to the
    second). A date that is no HTTP-date is ignored. The caller answers 304 Not Modified, without a body.

    An entity tag may come bare (``1``) rather than quoted: ``fhirpy``'s ``refresh()`` sends the versionId
    so, and it names the same version.
    """
    meta = resource.get("meta", {})
    match = request.headers.get("if-none-match")
    if match is not None:
        version = meta.get("versionId")
        tags = {_opaque(tag) for tag in match.split(",")}
        return "*" in tags or (version is not None and str(version) in tags)
    since = request.headers.get("if-modified-since")
    updated = _instant(meta.get("lastUpdated"))
    if since is None or updated is None:
        return False
    try:
        held = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    held = held.replace(tzinfo=UTC) if held.tzinfo is None else held
    return updated <= held


def _opaque(tag: str) -> str:
    """The opaque part of an entity tag: without ``W/`` and the quotes (weak comparison, RFC 7232 2.3.2)."""
    tag = tag.strip()
    return tag.removeprefix("W/").strip('"')


def _instant(value: object) -> datetime | None:
    """A FHIR instant (``meta.lastUpdated``) to the second, as HTTP dates count; None when absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).replace(microsecond=0)
    except ValueError:
        return None
