"""Reading request bodies: the ``multipart/related`` bodies of STOW-RS and the ``multipart/form-data``
uploads of ``POST /v1/studies``, parsed here (RFC 2387 / 7578 / 2046).

STOW-RS sends ``multipart/related; type="application/dicom"``, whose parts carry a ``Content-Type`` and no
``Content-Disposition``, which python-multipart does not speak. Uploads are form-data, which it does, but
Starlette's form reader hands every 64 KiB chunk of a file spooled past 1 MiB to a worker thread: about
130 thread hops and 20 ms of CPU per 8 MB radiograph, against 8 ms for a file spool (measured in
``benchmarks/README.md``, 2026-12-01), so both go through it.
A body is kept in memory as it streams in up to a bound (:class:`SpooledBody`: 1 MiB for STOW-RS,
whose parts are then copied one at a time; ``DXASSIST_UPLOAD_MEMORY_BYTES`` for uploads, whose files are
all held until the study is read anyway), as the chunks the server handed over, never joined: they are
searched in place (for the part delimiters as each arrives, when the boundary is known) and each part
is copied once, out of the chunks it spans, into the ``bytes`` the DICOM reader reads without another
copy. Past the bound the body is spooled to a
temporary file (bounded by the request size limit) and split in place: :func:`parse_related` searches
the file a window at a time and returns offsets, so each part's bytes are read only when its instance
is read, one at a time. (Not ``mmap``: the pages of a mapped file count in the process's resident set,
a read window does not.)
"""

from __future__ import annotations

import email.message
import email.utils
import tempfile
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Final, Protocol

from inference.api._errors import MalformedRequest

_MAX_HEADER_BYTES: Final = 16 * 1024
# RFC 2046 caps a boundary at 70 characters, but real senders exceed it (Orthanc 1.10's DICOMweb plugin
# sends 73): any printable boundary up to this cap is accepted, as mature servers do.
MAX_BOUNDARY_CHARS: Final = 200
_CRLF: Final = b"\r\n"
# A STOW-RS body stays in memory up to this size, then goes to a file (its parts are then read one at a
# time). Uploads to ``POST /v1/studies`` use ``DXASSIST_UPLOAD_MEMORY_BYTES`` instead.
SPOOL_IN_MEMORY_BYTES: Final = 1024 * 1024
_SCAN_BYTES: Final = 1024 * 1024  # the window searched for a delimiter in a spooled body


class _Buffer(Protocol):
    """What the parser needs of the body: ``bytes``, or a spooled file read a window at a time."""

    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def __getitem__(self, key: slice) -> bytes: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Part:
    """One body part: lower-cased header names → values, and where its content lies in the body."""

    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_type(self) -> str | None:
        """The part's media type without parameters, lower-cased (None when the part names none)."""
        value = self.headers.get("content-type")
        return media_type(value)[0] if value else None


def _parameter(value: str | tuple[str | None, str | None, str], header: str) -> str:
    """A header parameter's value, decoded when it is RFC 2231 encoded (``name*=charset''value``).

    Raises:
        MalformedRequest: An unknown or unusable charset (``idna``, ``undefined``), or a NUL character.
    """
    try:
        return email.utils.collapse_rfc2231_value(value)
    except (LookupError, ValueError) as e:  # UnicodeError is a ValueError; a NUL in the charset too
        raise MalformedRequest(
            f"A parameter of the {header} header could not be decoded: an RFC 2231 value "
            "(name*=charset''value) must name a text charset such as utf-8, and no parameter may hold "
            "a NUL character."
        ) from e


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into the lower-cased media type and its parameters (quotes removed).

    Raises:
        MalformedRequest: A parameter that cannot be decoded (:func:`_parameter`).
    """
    if not header:
        return "", {}
    message = email.message.Message()
    message["content-type"] = header
    params: dict[str, str] = {}
    for key, value in message.get_params(failobj=[])[1:]:
        params[key.lower()] = _parameter(value, "Content-Type")
    return message.get_content_type().lower(), params


def form_field(part: Part) -> tuple[str | None, bool]:
    """``(name, is_file)`` of a ``multipart/form-data`` part (RFC 7578): the ``name`` parameter of its
    ``Content-Disposition`` (None when it has none) and whether it carries a ``filename`` (a file, not a
    text value).

    Raises:
        MalformedRequest: A parameter that cannot be decoded (:func:`_parameter`).
    """
    value = part.headers.get("content-disposition")
    if not value:
        return None, False
    message = email.message.Message()
    message["content-disposition"] = value
    if message.get_content_disposition() != "form-data":
        return None, False
    name = message.get_param("name", header="content-disposition")
    filename = message.get_param("filename", header="content-disposition")
    if name is None:
        return None, filename is not None
    return _parameter(name, "Content-Disposition"), filename is not None


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


def _valid_boundary(boundary: str | None) -> bool:
    """1 to :data:`MAX_BOUNDARY_CHARS` printable ASCII characters (so no line break: a separator, which
    starts with one, cannot overlap itself)."""
    return (
        boundary is not None
        and 0 < len(boundary) <= MAX_BOUNDARY_CHARS
        and all(" " <= c <= "~" for c in boundary)
    )


def _separator(boundary: str) -> bytes:
    """The delimiter that ends a part: a line break, ``--`` and the boundary (RFC 2046 5.1.1)."""
    return _CRLF + b"--" + boundary.encode("latin-1")


def parse_related(body: _Buffer, boundary: str, *, max_parts: int) -> list[Part]:
    """Split a multipart body into its parts.

    Args:
        body: The whole request body (bytes, its received chunks as a :class:`_ChunkBuffer`, or a
            :class:`_FileBuffer` of the spooled body: neither is joined or read whole).
        boundary: The ``boundary`` parameter of the request's Content-Type.
        max_parts: Most parts accepted; one more raises (the caller answers 413).

    Returns:
        The parts in order, with their content's offsets in ``body`` (the close delimiter ends the body;
        the epilogue is ignored).

    Raises:
        MalformedRequest: No opening or closing delimiter, or a part without a header/body separator.
        ValueError: More than ``max_parts`` parts.
    """
    if not _valid_boundary(boundary):
        raise MalformedRequest(
            f"The multipart boundary must have 1 to {MAX_BOUNDARY_CHARS} printable ASCII characters."
        )
    delimiter = b"--" + boundary.encode("latin-1")
    if body[: len(delimiter)] == delimiter:
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
            Part(headers=_headers(body[header_start:header_end]), start=content_start, end=next_delimiter)
        )
        position = next_delimiter + 2


class _FileBuffer:
    """A spooled body seen as a buffer: slices are read from the file, ``find`` scans a window at a time."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._file = file
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self._size)
        if stop <= start:
            return b""
        self._file.seek(start)
        return self._file.read(stop - start)

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """Offset of the first ``sub`` in ``[start, end)``, or -1; windows overlap by ``len(sub) - 1``."""
        end = self._size if end is None else min(end, self._size)
        position = max(start, 0)
        while position < end:
            window_end = min(end, position + _SCAN_BYTES + len(sub) - 1)
            found = self[position:window_end].find(sub)
            if found >= 0:
                return position + found
            if window_end >= end:
                return -1
            position = window_end - (len(sub) - 1)
        return -1


class _ChunkBuffer:
    """A body held in memory as its received chunks, seen as one buffer without joining them.

    ``find`` searches each chunk in place, and the few bytes around each seam between chunks for a match
    that straddles it; a slice is copied once, from the chunks it spans (``bytes.join`` of views).
    ``marks`` (a separator and the offsets of all its matches, found while the body arrived: see
    :meth:`SpooledBody.receive`) answers ``find`` for that separator without searching again.
    """

    def __init__(self, chunks: list[bytes], marks: tuple[bytes, list[int]] | None = None) -> None:
        self._marks = marks
        self._chunks = [chunk for chunk in chunks if chunk]
        self._starts: list[int] = []  # offset of each chunk in the body
        size = 0
        for chunk in self._chunks:
            self._starts.append(size)
            size += len(chunk)
        self._size = size

    def __len__(self) -> int:
        return self._size

    def _chunk_at(self, position: int) -> int:
        """Index of the chunk holding ``position`` (``0 <= position < len(self)``)."""
        return bisect_right(self._starts, position) - 1

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self._size)
        if stop <= start:
            return b""
        index = self._chunk_at(start)
        first, base = self._chunks[index], self._starts[index]
        if stop - base <= len(first):
            return first[start - base : stop - base]
        pieces = [memoryview(first)[start - base :]]
        while True:
            index += 1
            chunk, base = self._chunks[index], self._starts[index]
            if stop - base <= len(chunk):
                pieces.append(memoryview(chunk)[: stop - base])
                return b"".join(pieces)
            pieces.append(memoryview(chunk))

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """Offset of the first ``sub`` in ``[start, end)``, or -1 (``sub`` not empty)."""
        end = self._size if end is None else min(end, self._size)
        start = max(start, 0)
        if end - start < len(sub):
            return -1
        if self._marks is not None and sub == self._marks[0]:
            offsets = self._marks[1]
            index = bisect_left(offsets, start)
            # The first match from ``start`` on; if it does not end by ``end``, no later one does.
            return offsets[index] if index < len(offsets) and offsets[index] + len(sub) <= end else -1
        seam = len(sub) - 1  # a match straddling a seam starts within this many bytes before it
        for index in range(self._chunk_at(start), len(self._chunks)):
            base, chunk = self._starts[index], self._chunks[index]
            # Matches inside this chunk start before any straddling its end seam, which start before any
            # in the next chunk: searched in that order, the first one found is the first in the body.
            found = chunk.find(sub, max(start - base, 0), end - base)
            if found >= 0:
                return base + found
            chunk_end = base + len(chunk)
            if chunk_end >= end:
                return -1
            if seam:
                window_start = max(chunk_end - seam, start)
                found = self[window_start : min(chunk_end + seam, end)].find(sub)
                if found >= 0:
                    return window_start + found
        return -1


# Chunks this small on average (a client trickling its body) are joined instead: searching them one by
# one would cost a Python step per chunk.
_MIN_MEAN_CHUNK_BYTES: Final = 4096
# Most separator offsets noted while a body arrives; a body with more is searched again when split.
_MAX_MARKS: Final = 1024


def _mark(separator: bytes, marks: list[int], tail: bytes, chunk: bytes, offset: int) -> bytes:
    """Append to ``marks`` the offset of each ``separator`` that ends in ``chunk``, in order.

    ``offset`` is where ``chunk`` starts in the body and ``tail`` the body's last ``len(separator) - 1``
    bytes before it (fewer at its start); returns the tail after ``chunk``. A separator cannot overlap
    itself (see :func:`_valid_boundary`), so each search resumes past the last match.
    """
    seam = len(separator) - 1
    if tail:  # a match across the seam starts in the tail: too short to hold one, as is chunk[:seam]
        found = (tail + chunk[:seam]).find(separator)
        if found >= 0:
            marks.append(offset - len(tail) + found)
    found = chunk.find(separator)
    while found >= 0 and len(marks) <= _MAX_MARKS:  # past it the caller drops them all
        marks.append(offset + found)
        found = chunk.find(separator, found + len(separator))
    return chunk[-seam:] if len(chunk) >= seam else (tail + chunk)[-seam:]


class SpooledBody:
    """A request body kept as it arrives, in memory up to a bound and in a temporary file past it, then
    split in place.

    A body of at most ``memory_bytes`` is kept as its received chunks and split in place, each part
    copied once out of them when asked for (:class:`_ChunkBuffer`); a larger one goes to an unlinked file
    in the system temp directory (TMPDIR) as soon as it passes the bound, and is then read one search
    window and one part at a time.
    """

    def __init__(self, memory_bytes: int = SPOOL_IN_MEMORY_BYTES) -> None:
        self._memory_bytes = memory_bytes
        self._chunks: list[bytes] = []
        self._marks: tuple[bytes, list[int]] | None = None
        self._file: IO[bytes] | None = None
        self._buffer: _Buffer = b""
        self.size = 0

    @property
    def on_disk(self) -> bool:
        """Whether the body went past the in-memory bound to a temporary file."""
        return self._file is not None

    async def receive(self, chunks: AsyncIterator[bytes], *, limit: int, boundary: str | None = None) -> None:
        """Keep the body's chunks, raising ``OverflowError`` once ``limit`` bytes are passed.

        The rest of an oversized body is never read: the caller answers 413 at once. With the body's
        ``boundary``, a body kept in memory is searched for its part separators chunk by chunk as it
        arrives, while the server waits for the next one, instead of all at once when it is split.
        """
        separator = _separator(boundary) if _valid_boundary(boundary) and boundary is not None else None
        marks: list[int] | None = [] if separator is not None else None
        tail = b""
        async for chunk in chunks:
            offset = self.size
            self.size += len(chunk)
            if self.size > limit:
                raise OverflowError(limit)
            if self._file is not None:
                self._file.write(chunk)
            elif self.size <= self._memory_bytes:
                self._chunks.append(chunk)
                if marks is not None and separator is not None and chunk:
                    tail = _mark(separator, marks, tail, chunk, offset)
                    if len(marks) > _MAX_MARKS:
                        marks = None
            else:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
                for kept in self._chunks:
                    self._file.write(kept)
                self._chunks = []
                self._file.write(chunk)
                marks = None
        if marks is not None and separator is not None:
            self._marks = (separator, marks)

    def parts(self, boundary: str, *, max_parts: int) -> list[Part]:
        """Split the body (see :func:`parse_related`, whose errors this raises)."""
        if self._file is None:
            if len(self._chunks) * _MIN_MEAN_CHUNK_BYTES > self.size:
                self._buffer = b"".join(self._chunks)
            else:
                marks = self._marks if _valid_boundary(boundary) else None  # else parse_related refuses it
                known = marks if marks is not None and marks[0] == _separator(boundary) else None
                self._buffer = _ChunkBuffer(self._chunks, known)
            self._chunks = []
        else:
            self._file.flush()
            self._buffer = _FileBuffer(self._file, self.size)
        return parse_related(self._buffer, boundary, max_parts=max_parts)

    def content(self, part: Part) -> bytes:
        """One part's bytes (read from the file, only that part's size, for a body on disk)."""
        return self._buffer[part.start : part.end]

    def iter_contents(self, parts: list[Part]) -> Iterator[tuple[str | None, bytes]]:
        """``(media type, bytes)`` of each part in turn, each read only when reached."""
        for part in parts:
            yield part.content_type, self.content(part)

    def close(self) -> None:
        """Drop the body (and remove its file)."""
        self._buffer = b""
        self._chunks = []
        self._marks = None
        if self._file is not None:
            self._file.close()
