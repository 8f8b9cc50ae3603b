"""PNG encoding of 8-bit pictures with ISA-L: the overlays, heat layers and display renderings.

Pillow's PNG writer goes through zlib; at its fastest level zlib took about 170 ms for a 1024-px RGB
overlay on the development machine, most of a first heatmap GET. The picture is therefore written
here: the standard chunks (IHDR, one IDAT, IEND), 8 bits per sample, no interlacing, every row with
the "Up" filter (computed with numpy), compressed by ISA-L (python-isal, level 2) in two bands of
rows at once: the first band ends with a sync flush (a byte-aligned, non-final block), so the two raw
deflate streams joined are one valid zlib stream, whose Adler-32 is taken over all the rows. On the
benchmark overlay (1024² RGB) this is about 4.5 ms where libdeflate at level 1 with the Sub filter
took 12-15 ms on one core, for a file about 3 % larger (the Up filter wins back most of what level 2
gives away); any PNG reader gets the exact pixels. A picture can also be handed over as a function that
draws any band of its rows (:func:`encode_png_rows`, the overlays): each band is then drawn on the
thread that compresses it.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channel count: grayscale, RGB, RGBA.
_COLOUR_TYPES: Final = {1: 0, 3: 2, 4: 6}
_UP: Final = 2
LEVEL: Final = 2
"""ISA-L level (0-3): 2 is as fast as 0 and 1 here and smaller; 3 costs about twice the time."""
_ZLIB_HEADER: Final = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level hint, header check OK
_BAND_BYTES: Final = 256 * 1024
"""Filtered rows below this are compressed in one band (a second thread would cost more than it saves)."""

_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def picture_thread() -> ThreadPoolExecutor:
    """The process's one extra thread for drawing work done beside the calling thread (a PNG's first band,
    a stored JPEG decoded while a finding's heat is made). Its jobs never wait for one another."""
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dxassist-picture")
        return _helper


def _chunk(kind: bytes, data: bytes | bytearray) -> tuple[bytes, bytes, bytes | bytearray, bytes]:
    """Length, type, data and CRC of one chunk, to be joined once with the rest of the file."""
    from isal import isal_zlib

    # The CRC-32 of the PNG and zlib polynomial, continued over the data without copying it.
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)


def _band(samples: np.ndarray, filtered: np.ndarray, start: int, stop: int, last: bool) -> bytes:
    """Filter rows ``[start, stop)`` ("Up": each sample less the one above, modulo 256; the first row
    of the picture as it is) and compress them to raw deflate, ending non-final unless ``last``.

    ``samples`` holds those rows, preceded by the row above ``start`` unless ``start`` is 0."""
    from isal import isal_zlib

    filtered[start:stop, 0] = _UP
    if start == 0:
        filtered[0, 1:] = samples[0]  # "Up" above the first row is zero
    np.subtract(samples[1:], samples[:-1], out=filtered[max(start, 1) : stop, 1:])
    compressor = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, -15)
    head = compressor.compress(filtered[start:stop].reshape(-1))
    return head + compressor.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of uint8 pixels ``[rows, columns]`` (grayscale), ``[.., 3]`` (RGB) or ``[.., 4]`` (RGBA).

    Raises:
        ValueError: The array is not uint8, is empty or has another shape.
    """
    if pixels.dtype != np.uint8:
        raise ValueError(f"A PNG is written from uint8 pixels; got {pixels.dtype}.")
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2]) if pixels.ndim == 3 else 0
    if channels not in _COLOUR_TYPES or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"A PNG is written from [rows, columns(, 3 or 4)] pixels; got shape {pixels.shape}.")
    rows, columns = int(pixels.shape[0]), int(pixels.shape[1])
    samples = np.ascontiguousarray(pixels).reshape(rows, columns * channels)
    return encode_png_rows(rows, columns, channels, lambda start, stop: samples[start:stop])


def encode_png_rows(
    rows: int, columns: int, channels: int, make_rows: Callable[[int, int], np.ndarray]
) -> bytes:
    """:func:`encode_png` of a picture whose rows are made band by band: ``make_rows(start, stop)``
    gives rows ``[start, stop)`` as uint8 ``[stop - start, columns(, channels)]``.

    A picture large enough is written in two bands at once, each made and compressed on its own thread
    (the first on :func:`picture_thread`); the second band also asks for the row above it, which its
    first row's "Up" filter needs. ``make_rows`` must therefore be safe to call from two threads and give
    the same pixels for a row whichever band asks for it.

    Raises:
        ValueError: ``rows``, ``columns`` or ``channels`` cannot make a PNG.
    """
    from isal import isal_zlib

    if channels not in _COLOUR_TYPES or rows <= 0 or columns <= 0:
        raise ValueError(
            f"A PNG has rows, columns and 1, 3 or 4 channels; got {rows}, {columns}, {channels}."
        )
    width = columns * channels
    # Each row: the filter type byte, then its filtered samples.
    filtered = np.empty((rows, width + 1), dtype=np.uint8)

    def band(start: int, stop: int, last: bool) -> bytes:
        first = max(start - 1, 0)  # the row above the band too: its first row's filter needs it
        made = np.asarray(make_rows(first, stop), dtype=np.uint8).reshape(stop - first, width)
        return _band(made, filtered, start, stop, last)

    if filtered.nbytes < _BAND_BYTES or rows < 2:
        bands = [band(0, rows, True)]
    else:
        middle = rows // 2
        # The first band on a second thread while this one does the second (both let go of the GIL).
        early = picture_thread().submit(band, 0, middle, False)
        try:
            late = band(middle, rows, True)
        finally:
            first = early.result()
        bands = [first, late]
    checksum = struct.pack(">I", isal_zlib.adler32(filtered.reshape(-1)))
    header = struct.pack(">IIBBBBB", columns, rows, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            *_chunk(b"IHDR", header),
            *_chunk(b"IDAT", b"".join((_ZLIB_HEADER, *bands, checksum))),
            *_chunk(b"IEND", b""),
        )
    )
