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
# Define hierarchical progression: the size of the whole image of a hierarchical JPEG (T.81 B.3.2).
_DHP = 0xDE
# The JP2 signature box (ISO/IEC 15444-1 I.5.1) and the box holding the codestream (I.5.4).
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JP2_CODESTREAM_BOX = b"jp2c"


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
    """Read the frame header of a JPEG or JPEG-LS codestream; None when there is none to read.

    The markers are walked from SOI as the standard lays them out: fill bytes (0xFF) may precede a marker
    (ITU-T T.81 B.1.1.2), anything else between two marker segments is not JPEG and ends the walk (None),
    as does a segment length shorter than its own length field. The first start-of-frame segment (or,
    for a hierarchical codestream, its DHP segment, which declares the size of the whole image) is the
    header.
    """
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
        if length < 2:
            return None
        if marker in _SOF or marker == _DHP:
            if pos + 10 > len(frame):
                return None
            precision, rows, columns, components = struct.unpack_from(">BHHB", frame, pos + 4)
            return CodestreamHeader(rows, columns, components, precision, False, marker, 0)
        if marker == 0xDA:  # start of scan before any SOF: not a valid stream
            return None
        pos += 2 + length
    return None


def j2k_header(frame: bytes) -> CodestreamHeader | None:
    """Read the SIZ and COD segments of a JPEG 2000 codestream, raw or in a JP2 file; None if unreadable.

    A JP2 file (which DICOM does not foresee but decoders read) is searched for its codestream box, the
    first ``jp2c`` box at the top level, which is the one decoders decode.
    """
    if frame[0:12] == _JP2_SIGNATURE:
        codestream = _jp2_codestream(frame)
        return None if codestream is None else _siz(codestream)
    return _siz(frame)


def _siz(frame: bytes | memoryview) -> CodestreamHeader | None:
    """Read a raw codestream's SIZ segment and the decomposition levels of its COD segment."""
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


def _jp2_codestream(jp2: bytes) -> memoryview | None:
    """The content of the first top-level ``jp2c`` box of a JP2 file; None when there is none."""
    pos = 0
    while pos + 8 <= len(jp2):
        length, kind = struct.unpack_from(">I4s", jp2, pos)
        header = 8
        if length == 1:  # the length follows as 64 bits (XLBox)
            if pos + 16 > len(jp2):
                return None
            (length,) = struct.unpack_from(">Q", jp2, pos + 8)
            header = 16
        elif length == 0:  # the last box runs to the end of the file
            length = len(jp2) - pos
        if length < header:
            return None
        if kind == _JP2_CODESTREAM_BOX:
            return memoryview(jp2)[pos + header : min(pos + length, len(jp2))]
        pos += length
    return None
