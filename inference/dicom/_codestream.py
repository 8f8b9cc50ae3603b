"""Cheap reads of JPEG / JPEG-LS / JPEG 2000 codestream headers (no decoding).

They let the reader compare what a codestream claims with Rows and Columns before a decoder allocates
anything, and tell the reduced-resolution decoders what they may do.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Start-of-frame markers: JPEG processes (C0-CF less DHT C4, JPG C8, DAC CC) and JPEG-LS (F7).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class CodestreamHeader:
    """Image size and sample layout declared by a codestream.

    Attributes:
        rows: Height (0 when a JPEG defers it to a DNL marker).
        columns: Width.
        components: Number of colour components.
        precision: Bits per sample.
        signed: True for signed samples (JPEG 2000 only).
        marker: The SOF marker byte for JPEG, 0x51 (SIZ) for JPEG 2000.
        levels: JPEG 2000 wavelet decomposition levels (0 for JPEG).
    """

    rows: int
    columns: int
    components: int
    precision: int
    signed: bool
    marker: int
    levels: int


def jpeg_header(frame: bytes) -> CodestreamHeader | None:
    """Read the SOF segment of a JPEG or JPEG-LS codestream; None when there is none to read."""
    if len(frame) < 4 or frame[0:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", frame, pos + 2)
        if marker in _SOF:
            if pos + 10 > len(frame):
                return None
            precision, rows, columns, components = struct.unpack_from(">BHHB", frame, pos + 4)
            return CodestreamHeader(rows, columns, components, precision, False, marker, 0)
        if marker == 0xDA:  # start of scan before any SOF: not a valid stream
            return None
        pos += 2 + length
    return None


def j2k_header(frame: bytes) -> CodestreamHeader | None:
    """Read the SIZ and COD segments of a raw JPEG 2000 codestream; None for JP2 or unreadable input."""
    if len(frame) < 43 or frame[0:4] != b"\xff\x4f\xff\x51":
        return None
    (lsiz,) = struct.unpack_from(">H", frame, 4)
    _, xsiz, ysiz, xosiz, yosiz, _, _, _, _, csiz = struct.unpack_from(">HIIIIIIIIH", frame, 6)
    if lsiz < 41 or 4 + lsiz > len(frame):
        return None
    ssiz = frame[42]
    levels = 0
    pos = 4 + lsiz
    # Walk the main header up to the first tile-part (SOT, 0xFF90) looking for COD (0xFF52).
    while pos + 4 <= len(frame) and frame[pos] == 0xFF and frame[pos + 1] != 0x90:
        marker = frame[pos + 1]
        (length,) = struct.unpack_from(">H", frame, pos + 2)
        if marker == 0x52 and pos + 9 < len(frame):
            levels = frame[pos + 9]
            break
        pos += 2 + length
    return CodestreamHeader(
        rows=ysiz - yosiz,
        columns=xsiz - xosiz,
        components=csiz,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        marker=0x51,
        levels=levels,
    )
