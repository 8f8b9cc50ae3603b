"""The STOW-RS body spool: a body streams to a file and its parts are copied out one at a time."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest

from inference.api._errors import MalformedRequest
from inference.api._multipart import _SCAN_BYTES, SPOOL_IN_MEMORY_BYTES, SpooledBody, parse_related

MIB = 1024 * 1024


def _body(contents: list[bytes], boundary: str = "spool") -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return b"".join(head + c + b"\r\n" for c in contents) + f"--{boundary}--\r\n".encode()


async def _stream(body: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


def _spool_and_read(body: bytes, limit: int) -> list[tuple[str | None, int, bytes]]:
    spool = SpooledBody()
    try:
        asyncio.run(spool.receive(_stream(body), limit=limit))
        parts = spool.parts("spool", max_parts=10)
        return [(kind, len(content), content[:4]) for kind, content in spool.iter_contents(parts)]
    finally:
        spool.close()


# Sizes around the search window put the next delimiter across the edge of a window.
@pytest.mark.parametrize(
    "size", [10, SPOOL_IN_MEMORY_BYTES + 1, *(_SCAN_BYTES + k for k in (0, 2, 4, 6, 8, 10))]
)
def test_parts_read_from_memory_or_disk_are_the_parts_sent(size: int) -> None:
    contents = [b"A" * size, b"\r\n--spoo" + b"B" * size, b""]
    got = _spool_and_read(_body(contents), limit=64 * MIB)
    assert got == [("application/dicom", len(c), c[:4]) for c in contents]


def test_a_large_body_is_never_held_whole_in_memory() -> None:
    body = _body([bytes([n]) * (4 * MIB) for n in range(4)])  # 16 MiB in four parts
    tracemalloc.start()
    try:
        spool = SpooledBody()
        try:
            asyncio.run(spool.receive(_stream(body), limit=64 * MIB))
            parts = spool.parts("spool", max_parts=10)
            sizes = [len(content) for _, content in spool.iter_contents(parts)]
        finally:
            spool.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sizes == [4 * MIB] * 4
    # The test's own copy of the body is allocated before tracing; the spool holds one part at a time.
    assert peak < 9 * MIB, peak


def test_the_limit_is_refused_while_streaming_and_broken_bodies_raise() -> None:
    with pytest.raises(OverflowError):
        _spool_and_read(_body([b"x" * (2 * MIB)]), limit=MIB)
    with pytest.raises(MalformedRequest):
        _spool_and_read(b"", limit=MIB)
    with pytest.raises(MalformedRequest):
        _spool_and_read(_body([b"y" * (2 * MIB)])[:-20], limit=64 * MIB)
    (part,) = parse_related(_body([b"z"]), "spool", max_parts=1)
    assert (part.content_type, part.end - part.start) == ("application/dicom", 1)


@pytest.mark.parametrize("memory_bytes", [0, 3 * MIB, 64 * MIB])
def test_the_memory_bound_chooses_memory_or_file_and_not_the_parts(memory_bytes: int) -> None:
    contents = [bytes([n]) * MIB for n in range(4)]  # a body of a little over 4 MiB
    body = _body(contents)
    spool = SpooledBody(memory_bytes=memory_bytes)
    try:
        asyncio.run(spool.receive(_stream(body), limit=64 * MIB))
        assert spool.on_disk is (len(body) > memory_bytes)
        parts = spool.parts("spool", max_parts=10)
        assert [content for _, content in spool.iter_contents(parts)] == contents
    finally:
        spool.close()


async def _pieces(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    edges = [0, *sorted(set(cuts)), len(body)]
    for start, end in zip(edges, edges[1:], strict=False):
        yield body[start:end]


def _chunkings(body: bytes, boundary: str) -> Iterator[list[int]]:
    """Cuts that put a seam between chunks at every byte of every delimiter (and just around it), and
    cuts that leave a delimiter spread over one-byte chunks."""
    delimiter = f"\r\n--{boundary}".encode()
    at = body.find(delimiter)
    while at >= 0:
        for k in range(-1, len(delimiter) + 2):
            yield [at + k]
            yield [at + k, at + k + 1, at + k + 3]  # a seam of a match and a tiny chunk within it
        yield list(range(at - 1, at + len(delimiter) + 1))  # one byte per chunk
        at = body.find(delimiter, at + 1)


@pytest.mark.parametrize("announced", [True, False])
def test_a_body_in_memory_is_split_the_same_however_its_chunks_fell(announced: bool) -> None:
    """Where the server's chunks end (inside a delimiter, a byte before or after it, one byte per chunk)
    never changes the parts read: a match across a seam is found, a near-match is not; whether the
    delimiters were searched while the body arrived (its boundary announced) or when it is split."""
    boundary = "spool" if announced else None
    contents = [b"A" * 200_000, b"\r\n--spoo" + b"B" * 9_000 + b"--spool\r\n", b"", b"C" * 70_000]
    body = _body(contents)
    chunkings = list(_chunkings(body, "spool"))
    assert len(chunkings) >= 4 * 20  # four delimiters after a line break (three between parts, the close)
    for cuts in [*chunkings, [], list(range(0, len(body), 7))]:
        spool = SpooledBody(memory_bytes=64 * MIB)
        try:
            asyncio.run(spool.receive(_pieces(body, cuts), limit=64 * MIB, boundary=boundary))
            assert not spool.on_disk
            parts = spool.parts("spool", max_parts=10)
            assert [content for _, content in spool.iter_contents(parts)] == contents, cuts
        finally:
            spool.close()
    for cuts in chunkings[:: len(chunkings) // 20]:
        spool = SpooledBody(memory_bytes=64 * MIB)
        try:
            # No closing delimiter.
            asyncio.run(spool.receive(_pieces(body[:-12], cuts), limit=64 * MIB, boundary=boundary))
            with pytest.raises(MalformedRequest):
                spool.parts("spool", max_parts=10)
        finally:
            spool.close()


@pytest.mark.parametrize("memory_bytes", [64 * MIB, 0])
def test_a_body_of_many_parts_is_split_whole_from_memory_or_disk(memory_bytes: int) -> None:
    """More parts than the delimiters noted while a body arrives (past that many it is searched again
    when split) are all read, as they are from a spool file."""
    contents = [bytes([n % 251]) * (n % 7) for n in range(3000)] + [b"D" * 20_000]
    body = _body(contents)
    spool = SpooledBody(memory_bytes=memory_bytes)
    try:
        asyncio.run(spool.receive(_stream(body), limit=64 * MIB, boundary="spool"))
        parts = spool.parts("spool", max_parts=len(contents))
        assert [content for _, content in spool.iter_contents(parts)] == contents
    finally:
        spool.close()
