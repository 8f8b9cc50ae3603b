"""Reading request bodies: the ``multipart/related`` bodies of STOW-RS, parsed here (RFC 2387 / 2046).

python-multipart only speaks ``multipart/form-data``; STOW-RS sends ``multipart/related;
type="application/dicom"``, whose parts carry a ``Content-Type`` and no ``Content-Disposition``.
The body is already bounded by the request size limit when it reaches :func:`parse_related`.
"""

from __future__ import annotations

import email.message
import email.utils
from dataclasses import dataclass
from typing import Final

from inference.api._errors import MalformedRequest

_MAX_HEADER_BYTES: Final = 16 * 1024
# RFC 2046 caps a boundary at 70 characters, but real senders exceed it (Orthanc 1.10's DICOMweb plugin
# sends 73): any printable boundary up to this cap is accepted, as mature servers do.
MAX_BOUNDARY_CHARS: Final = 200
_CRLF: Final = b"\r\n"


@dataclass(frozen=True)
class Part:
    """One body part: lower-cased header names → values, and the content bytes."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str | None:
        """The part's media type without parameters, lower-cased (None when the part names none)."""
        value = self.headers.get("content-type")
        return media_type(value)[0] if value else None


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into the lower-cased media type and its parameters (quotes removed)."""
    if not header:
        return "", {}
    message = email.message.Message()
    message["content-type"] = header
    params: dict[str, str] = {}
    for key, value in message.get_params(failobj=[])[1:]:
        params[key.lower()] = email.utils.collapse_rfc2231_value(value)
    return message.get_content_type().lower(), params


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise MalformedRequest(
                "A part of the multipart body has a header line without a name; "
                "each line must be 'Name: value'."
            )
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def parse_related(body: bytes, boundary: str, *, max_parts: int) -> list[Part]:
    """Split a multipart body into its parts.

    Args:
        body: The whole request body.
        boundary: The ``boundary`` parameter of the request's Content-Type.
        max_parts: Most parts accepted; one more raises (the caller answers 413).

    Returns:
        The parts in order (the close delimiter ends the body; the epilogue is ignored).

    Raises:
        MalformedRequest: No opening or closing delimiter, or a part without a header/body separator.
        ValueError: More than ``max_parts`` parts.
    """
    if not boundary or len(boundary) > MAX_BOUNDARY_CHARS or not all(" " <= c <= "~" for c in boundary):
        raise MalformedRequest(
            f"The multipart boundary must have 1 to {MAX_BOUNDARY_CHARS} printable ASCII characters."
        )
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        position = 0
    else:
        found = body.find(_CRLF + delimiter)
        if found < 0:
            raise MalformedRequest(
                "The multipart body does not contain its boundary; check the Content-Type."
            )
        position = found + 2
    parts: list[Part] = []
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            return parts
        line_end = body.find(_CRLF, position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MalformedRequest("A multipart boundary line is followed by unexpected characters.")
        header_start = line_end + 2
        if body[header_start : header_start + 2] == _CRLF:
            header_end, content_start = header_start, header_start + 2
        else:
            header_end = body.find(_CRLF + _CRLF, header_start, header_start + _MAX_HEADER_BYTES)
            if header_end < 0:
                raise MalformedRequest("A part of the multipart body has no blank line after its headers.")
            content_start = header_end + 4
        next_delimiter = body.find(_CRLF + delimiter, content_start)
        if next_delimiter < 0:
            raise MalformedRequest(
                "The multipart body ends without its closing boundary; send the whole body."
            )
        if len(parts) >= max_parts:
            raise ValueError(f"more than {max_parts} parts")
        parts.append(
            Part(headers=_headers(body[header_start:header_end]), content=body[content_start:next_delimiter])
        )
        position = next_delimiter + 2
