"""Byte-level checks that run before pydicom sees the data.

pydicom trusts what a file declares: it inflates a deflated dataset in one call, follows sequences as
deep as they go and reads lengths as given. Here the file is walked cheaply first, so hostile or broken
input is refused with a precise code and bounded work.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ._errors import DicomRejected, reject

UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_ROWS = 0x00280010
_COLUMNS = 0x00280011
_BITS_ALLOCATED = 0x00280100
_DECLARED = frozenset({_ROWS, _COLUMNS, _BITS_ALLOCATED})
# Explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_INFLATE_CHUNK = 1 << 20
_INFLATE_INPUT = 1 << 16


@dataclass(frozen=True)
class FileMeta:
    """Where the file meta group ends and the transfer syntax it names."""

    end: int
    transfer_syntax_uid: str


@dataclass(frozen=True)
class Structure:
    """What the walk found at the top level of the dataset."""

    pixel_data_offset: int | None  # offset of the value inside the body
    pixel_data_length: int | None  # None when encapsulated (undefined length)
    max_depth: int
    # Rows, Columns and Bits Allocated as the top level declares them (2-byte values; None otherwise),
    # read before anything is parsed to size what decoding the frame will take.
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None


def check_preamble(data: bytes, max_bytes: int) -> None:
    """Refuse files over the byte limit and anything without the Part-10 preamble and 'DICM'."""
    if len(data) > max_bytes:
        raise reject(
            "instance_too_large",
            f"The DICOM file has {len(data)} bytes, more than the limit of {max_bytes} bytes.",
        )
    if len(data) < 132 or data[128:132] != b"DICM":
        raise reject(
            "not_dicom",
            "The file is not a DICOM Part-10 file (no 'DICM' after a 128-byte preamble); "
            "send DICOM Part-10 files.",
        )


def read_file_meta(data: bytes) -> FileMeta:
    """Walk the group 0002 elements (always explicit VR little endian) and read the transfer syntax."""
    pos = 132
    ts: str | None = None
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if not vr.isalpha() or not vr.isupper():
            raise reject("malformed_header", "The file meta information has an element with an invalid VR.")
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise reject("truncated", "The DICOM file ends inside the file meta information.")
            (length,) = struct.unpack_from("<I", data, pos + 8)
            header = 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            header = 8
        if length == UNDEFINED:
            raise reject("malformed_header", "The file meta information has an element of undefined length.")
        end = pos + header + length
        if end > len(data):
            raise reject("truncated", "The DICOM file ends inside the file meta information.")
        if element == 0x0010:
            ts = data[pos + header : end].decode("ascii", "replace").strip("\x00 ")
        pos = end
    if pos + 8 > len(data):
        # Ran out of bytes inside or right after the meta group: there is no dataset to read.
        raise reject("truncated", "The DICOM file ends inside or right after the file meta information.")
    if pos == 132:
        raise reject("malformed_header", "The DICOM file has no file meta information group (0002).")
    if not ts:
        raise reject(
            "missing_attribute",
            "The file meta information has no Transfer Syntax UID (0002,0010); it is required.",
        )
    return FileMeta(end=pos, transfer_syntax_uid=ts)


def inflated_size(deflated: bytes | memoryview, cap: int) -> int:
    """Inflate a raw-deflate stream without keeping its output, and return how many bytes it inflates to.

    The stream is fed in slices and inflated a chunk at a time, so however far a stream would inflate,
    this holds about one chunk (1 MiB): a bomb is refused once its output passes ``cap``, having kept
    nothing of it.

    Args:
        deflated: The deflated dataset (after the file meta group).
        cap: Most bytes the dataset may inflate to (the per-instance limit, ``Limits.max_instance_bytes``).

    Returns:
        The inflated size, at most ``cap``.

    Raises:
        DicomRejected: ``deflate_bomb`` (413) past ``cap``, ``malformed_header`` for a stream that is not
            deflate, ``truncated`` when the stream ends early.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    view = memoryview(deflated)
    size = 0
    try:
        for begin in range(0, len(view), _INFLATE_INPUT):
            # A slice at a time: ``unconsumed_tail`` is a copy of the input left, which must stay small.
            pending: bytes | memoryview = view[begin : begin + _INFLATE_INPUT]
            # Stop at the end of the deflate stream: bytes after it (pydicom pads odd lengths with one)
            # stay in unused_data and would otherwise be fed again forever.
            while pending and not inflater.eof:
                size += len(inflater.decompress(pending, _INFLATE_CHUNK))
                if size > cap:
                    raise _bomb(cap)
                pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        size += len(inflater.flush())
    except zlib.error as e:
        raise reject("malformed_header", "The deflated dataset is not a valid deflate stream.") from e
    if size > cap:
        raise _bomb(cap)
    if not inflater.eof:
        raise reject("truncated", "The deflated dataset ends before the deflate stream does.")
    return size


def inflate_capped(deflated: bytes | memoryview, cap: int, size: int | None = None) -> bytes:
    """Inflate a raw-deflate stream into one bytes object, refusing output larger than ``cap`` bytes.

    The stream is measured first (:func:`inflated_size`, unless ``size`` already says), then inflated
    into an object of exactly that size: the inflated dataset is held once, never a growing buffer and
    a copy of it.

    Args:
        deflated: The deflated dataset (after the file meta group).
        cap: Most bytes the dataset may inflate to.
        size: What :func:`inflated_size` returned for this stream and cap, if it was called already.

    Returns:
        The inflated dataset.

    Raises:
        DicomRejected: As :func:`inflated_size`.
    """
    if size is None:
        size = inflated_size(deflated, cap)
    if size == 0:
        return b""
    try:
        # With an output buffer of the exact size, zlib hands back that one buffer, uncopied.
        out = zlib.decompress(deflated, -zlib.MAX_WBITS, size)
    except zlib.error as e:
        raise reject("malformed_header", "The deflated dataset is not a valid deflate stream.") from e
    if len(out) != size:  # not the stream that was measured
        raise reject("malformed_header", "The deflated dataset is not a valid deflate stream.")
    return out


def _bomb(cap: int) -> DicomRejected:
    return reject(
        "deflate_bomb",
        f"The deflated dataset inflates to more than {cap} bytes, the limit for one DICOM file "
        "(deflated or not).",
    )


class _Walker:
    """Walks element headers and sequence items without interpreting values."""

    def __init__(self, buf: bytes | memoryview, implicit: bool, little: bool, max_depth: int) -> None:
        self.buf = buf
        self.implicit = implicit
        self.endian = "<" if little else ">"
        self.max_depth = max_depth
        self.deepest = 0
        self.pixel_offset: int | None = None
        self.pixel_length: int | None = None
        self.declared: dict[int, int] = {}

    def _u32(self, pos: int) -> int:
        return int(struct.unpack_from(self.endian + "I", self.buf, pos)[0])

    def _tag(self, pos: int, end: int) -> int:
        if pos + 8 > end:
            raise reject("truncated", "The DICOM file ends inside an element header.")
        group, element = struct.unpack_from(self.endian + "HH", self.buf, pos)
        return int(group) << 16 | int(element)

    def dataset(self, pos: int, end: int, depth: int, implicit: bool, in_item: bool) -> int:
        """Walk elements from ``pos``; stop at ``end`` or, inside an undefined-length item, its delimiter."""
        while pos < end:
            if in_item is True and pos + 8 <= end and self._tag(pos, end) == _ITEM_DELIMITER:
                return pos + 8
            pos = self._element(pos, end, depth, implicit)
        if in_item:
            raise reject("truncated", "The DICOM file ends inside a sequence item.")
        return pos

    def _element(self, pos: int, end: int, depth: int, implicit: bool) -> int:
        tag = self._tag(pos, end)
        if tag in (_ITEM, _ITEM_DELIMITER, _SEQUENCE_DELIMITER):
            raise reject("malformed_header", "The DICOM dataset has a sequence item outside a sequence.")
        vr: bytes | None = None
        if implicit:
            length, header = self._u32(pos + 4), 8
        else:
            vr = bytes(self.buf[pos + 4 : pos + 6])  # the buffer may be a memoryview
            if not vr.isalpha() or not vr.isupper():
                raise reject(
                    "malformed_header",
                    "The DICOM dataset has an element with an invalid VR; "
                    "it is not encoded as its transfer syntax declares.",
                )
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise reject("truncated", "The DICOM file ends inside an element header.")
                length, header = self._u32(pos + 8), 12
            else:
                length = int(struct.unpack_from(self.endian + "H", self.buf, pos + 6)[0])
                header = 8
        value = pos + header
        at_top = depth == 0
        if at_top and tag in _DECLARED and length == 2 and value + 2 <= end:
            self.declared[tag] = int(struct.unpack_from(self.endian + "H", self.buf, value)[0])
        if tag == _PIXEL_DATA and at_top:
            self.pixel_offset = value
            self.pixel_length = None if length == UNDEFINED else length
            if length == UNDEFINED:
                return self._fragments(value, end)
        if length == UNDEFINED:
            # Undefined length means a sequence: SQ, UN holding implicit VR LE (PS3.5 6.2.2), or a
            # private / unknown tag read implicitly, as pydicom does.
            if vr is not None and vr not in (b"SQ", b"UN"):
                raise reject("malformed_header", "A non-sequence element has an undefined length.")
            return self._sequence(value, end, depth + 1, implicit or vr == b"UN", defined_end=None)
        if value + length > end:
            raise reject("truncated", "The DICOM file ends before the value of an element it declares.")
        # pydicom reads a known sequence tag sent as UN as an implicit VR LE sequence: walk it the same way.
        if vr == b"SQ" or ((implicit or vr == b"UN") and _implicit_is_sequence(tag)):
            inner_implicit = implicit or vr == b"UN"
            return self._sequence(
                value, value + length, depth + 1, inner_implicit, defined_end=value + length
            )
        return value + length

    def _sequence(self, pos: int, end: int, depth: int, implicit: bool, defined_end: int | None) -> int:
        if depth > self.max_depth:
            raise reject(
                "nesting_too_deep",
                f"The DICOM file nests sequences more than {self.max_depth} levels deep; "
                f"at most {self.max_depth} are accepted.",
            )
        self.deepest = max(self.deepest, depth)
        limit = end if defined_end is not None else len(self.buf)
        while pos < limit:
            tag = self._tag(pos, limit)
            length = self._u32(pos + 4)
            pos += 8
            if tag == _SEQUENCE_DELIMITER:
                if defined_end is not None:
                    raise reject("malformed_header", "A defined-length sequence has a sequence delimiter.")
                return pos
            if tag != _ITEM:
                raise reject("malformed_header", "A sequence holds something other than items.")
            if length == UNDEFINED:
                pos = self.dataset(pos, limit, depth, implicit, in_item=True)
            else:
                if pos + length > limit:
                    raise reject("truncated", "The DICOM file ends before a sequence item it declares.")
                pos = self.dataset(pos, pos + length, depth, implicit, in_item=False)
        if defined_end is None:
            raise reject("truncated", "The DICOM file ends inside a sequence.")
        return pos

    def _fragments(self, pos: int, end: int) -> int:
        while True:
            tag = self._tag(pos, end)
            length = self._u32(pos + 4)
            pos += 8
            if tag == _SEQUENCE_DELIMITER:
                return pos
            if tag != _ITEM or length == UNDEFINED:
                raise reject(
                    "malformed_header", "The encapsulated Pixel Data holds something other than fragments."
                )
            if pos + length > end:
                raise reject("truncated", "The DICOM file ends inside the encapsulated Pixel Data.")
            pos += length


def _implicit_is_sequence(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


def walk_structure(body: bytes | memoryview, *, implicit: bool, little: bool, max_depth: int) -> Structure:
    """Walk every element header and sequence item of a dataset.

    Args:
        body: The dataset bytes after the file meta group (inflated when deflated).
        implicit: True for implicit VR.
        little: True for little endian.
        max_depth: Deepest accepted sequence nesting.

    Returns:
        Where the top-level Pixel Data is, how deep sequences go, and the declared image size.

    Raises:
        DicomRejected: ``truncated``, ``malformed_header`` or ``nesting_too_deep``.
    """
    walker = _Walker(body, implicit, little, max_depth)
    walker.dataset(0, len(body), 0, implicit, in_item=False)
    return Structure(
        walker.pixel_offset,
        walker.pixel_length,
        walker.deepest,
        rows=walker.declared.get(_ROWS),
        columns=walker.declared.get(_COLUMNS),
        bits_allocated=walker.declared.get(_BITS_ALLOCATED),
    )
