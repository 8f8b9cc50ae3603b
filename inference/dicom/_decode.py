"""Pixel decoding: full resolution through pydicom's decoders, reduced resolution where the codec allows.

JPEG 2000 holds a resolution pyramid and baseline JPEG can scale its inverse DCT, so when the caller
says how large the model input is, those two decode only the resolution the model and the display need
(JPEG 2000: at least four times the input size on the short side; JPEG: twice; both: at least the display
rendering's side, :data:`REDUCED_MIN_LONG_SIDE`, on the long side). Every other case decodes in full.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Final

import numpy as np

from . import _syntax
from ._codestream import CodestreamHeader, j2k_header, jpeg_header
from ._errors import reject

if TYPE_CHECKING:
    from pydicom import Dataset

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure_decode_threads(threads: int) -> int:
    """Set how many threads OpenJPEG decodes one JPEG 2000 image on (0: the usable cores); returns it.

    OpenJPEG (under Pillow's reduced-resolution decode and pylibjpeg-openjpeg's full one) reads
    ``OPJ_NUM_THREADS`` each time it makes a codec; neither wrapper has another way to set it. On a quiet
    2-core host two threads cut the server's JPEG 2000 latency by about 30 % and raised its throughput at
    16 clients by about 45 % (``benchmarks/README.md``, 2026-12-02); on a host shared with other heavy work
    they made latency worse, hence ``DXASSIST_DECODE_THREADS`` (docs/operations.md).
    """
    count = usable_cores() if threads <= 0 else int(threads)
    os.environ["OPJ_NUM_THREADS"] = str(count)
    return count


REDUCED_MIN_LONG_SIDE: Final = 1024
"""A reduced decode keeps at least this many pixels on the image's long side: the display rendering's
side (``inference.analysis.DISPLAY_SIDE``, kept equal by a test), so the viewer, the overlays and the PACS
captures are never interpolated up from fewer pixels than they show."""


@dataclass(frozen=True)
class PixelLayout:
    """The pixel description of the header, already checked for consistency."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int


def check_native_length(length: int, layout: PixelLayout) -> None:
    """Refuse native Pixel Data whose length disagrees with Rows x Columns x Bits Allocated."""
    expected = layout.rows * layout.columns * layout.bits_allocated // 8
    # One trailing pad byte keeps an odd length even (PS3.5 8.1.1).
    if not (length == expected or (expected % 2 == 1 and length == expected + 1)):
        raise reject(
            "pixel_length_mismatch",
            f"Pixel Data has {length} bytes but Rows x Columns x Bits Allocated / 8 requires {expected}; "
            "send a file whose pixel data matches its header.",
        )


def decode(
    ds: Dataset,
    ts: str,
    layout: PixelLayout,
    target_size: int | None,
    min_long_side: int = REDUCED_MIN_LONG_SIDE,
) -> tuple[np.ndarray, int]:
    """Decode the single frame of ``ds`` to stored values.

    Args:
        ds: The parsed dataset, Pixel Data included, with ``file_meta.TransferSyntaxUID`` set.
        ts: The transfer syntax the pixel data is encoded with.
        layout: Rows, columns and bit depths from the header.
        target_size: Model input size; enables reduced-resolution decoding when not None.
        min_long_side: Fewest pixels a reduced decode keeps on the long side (the display's side).

    Returns:
        ``(pixels, reduction)``: 2-D stored values and the decimation factor (1 for full resolution).

    Raises:
        DicomRejected: ``codestream_mismatch``, ``not_grayscale`` or ``decode_failed`` (also when the
            frame header of a JPEG, JPEG-LS or JPEG 2000 frame cannot be read: the size a decoder would
            allocate is then unknown, so the frame is refused rather than decoded).
    """
    if ts in _syntax.JPEG_FAMILY or ts in _syntax.J2K_FAMILY:
        frame = _first_frame(ds)
        header = j2k_header(frame) if ts in _syntax.J2K_FAMILY else jpeg_header(frame)
        if header is None:
            raise reject("decode_failed", _UNREADABLE_HEADER["J2K" if ts in _syntax.J2K_FAMILY else "JPEG"])
        _check_codestream(header, layout)
        reduced = _reduced(frame, ts, header, layout, target_size, min_long_side)
        if reduced is not None:
            return _stored_values(reduced[0], layout), reduced[1]
    arr = _full(ds, ts)
    if arr.shape != (layout.rows, layout.columns):
        raise reject(
            "decode_failed",
            f"The decoded image has shape {tuple(arr.shape)} but the header declares "
            f"{layout.rows} x {layout.columns}; send a consistent file.",
        )
    return _stored_values(arr, layout), 1


def _first_frame(ds: Dataset) -> bytes:
    from pydicom.encaps import get_frame

    try:
        return bytes(get_frame(ds.PixelData, 0, number_of_frames=1))
    except Exception as e:
        raise reject("decode_failed", "The encapsulated Pixel Data has no readable frame.") from e


# A decoder sizes its output from the frame header: without one, nothing bounds what it would allocate
# (a 7.5 KB JP2 file claiming 20000 x 20000 pixels grew the process by 2.3 GiB before being refused).
_UNREADABLE_HEADER: Final = {
    "JPEG": (
        "The JPEG frame header (the SOF marker segment) of the compressed image could not be read, so its "
        "size cannot be checked before decoding; send a JPEG codestream with nothing but fill bytes "
        "(0xFF) between its marker segments."
    ),
    "J2K": (
        "The JPEG 2000 frame header (the SIZ marker segment) of the compressed image could not be read, "
        "so its size cannot be checked before decoding; send a JPEG 2000 codestream (or a JP2 file with "
        "its codestream box) that starts with SOC and SIZ."
    ),
}


def _check_codestream(header: CodestreamHeader, layout: PixelLayout) -> None:
    """Refuse a frame whose header declares another size or sample layout than Rows and Columns.

    A decoder allocates what the frame header declares, so this is what holds decoding to the pixel
    limit that :func:`inference.dicom._header.pixel_layout` applied to Rows and Columns.
    """
    if header.components != 1:
        raise reject(
            "not_grayscale",
            f"The compressed image has {header.components} colour components; only grayscale "
            "(one component) images are accepted.",
        )
    if header.rows == 0:
        # The height would come after the image data (a DNL marker, or a JPEG-LS LSE segment), too late
        # to bound what the decoder allocates.
        raise reject(
            "codestream_mismatch",
            f"The compressed image's frame header declares 0 rows (its height follows the image data) "
            f"where the header declares {layout.rows}; send a frame header that declares the size.",
        )
    if header.columns != layout.columns or header.rows != layout.rows:
        raise reject(
            "codestream_mismatch",
            f"The compressed image's frame header declares {header.rows} x {header.columns} pixels but "
            f"the DICOM header declares {layout.rows} x {layout.columns}; send a consistent file.",
        )


_JPEG_LS = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})


def _full(ds: Dataset, ts: str) -> np.ndarray:
    from pydicom.pixels.decoders.base import get_decoder

    decoder = get_decoder(ts)
    # For JPEG-LS, CharLS (pyjpegls) decodes about 4x faster than libjpeg, pydicom's first choice.
    plugin = "pyjpegls" if ts in _JPEG_LS and "pyjpegls" in decoder.available_plugins else ""
    try:
        # Unused high bits are cleared (or sign-extended) by _stored_values in one pass that also makes
        # the one copy of native pixels (pydicom returns a read-only view on the encoded bytes); pydicom's
        # own correction would copy the view, shift it twice, and copy it again for writing.
        arr, _ = decoder.as_array(
            ds,
            index=0,
            decoding_plugin=plugin,
            correct_unused_bits=False,  # type: ignore[arg-type]  # pydicom types **kwargs as DecodeOptions
            view_only=ts in _syntax.NATIVE,  # type: ignore[arg-type]
        )
    except MemoryError as e:
        raise reject("decode_failed", "The pixel data needs more memory to decode than is available.") from e
    except BaseException as e:
        if not _decoder_failure(e):
            raise
        raise reject(
            "decode_failed",
            f"The pixel data could not be decoded with transfer syntax {ts} ({type(e).__name__}); "
            "send an intact file.",
        ) from e
    return np.asarray(arr)


def _decoder_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a decoder's failure on bad data rather than the process being stopped.

    Decoders written in Rust (pylibjpeg-rle, pydicom's first choice for RLE) raise ``PanicException``
    when a panic (e.g. a segment that decodes past its frame) crosses into Python; PyO3 derives it from
    ``BaseException`` so that ``except Exception`` does not swallow it, which left such a file as an
    unhandled error (HTTP 500) instead of a refusal.
    """
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _reduced(
    frame: bytes,
    ts: str,
    header: CodestreamHeader,
    layout: PixelLayout,
    target_size: int | None,
    min_long_side: int,
) -> tuple[np.ndarray, int] | None:
    """Try a reduced-resolution decode; None means decode in full instead."""
    if not target_size or target_size <= 0:
        return None
    short, long = sorted((layout.rows, layout.columns))
    try:
        if ts in _syntax.J2K_FAMILY:
            return _j2k_reduced(frame, header, (short, long), target_size, min_long_side)
        if ts == _syntax.JPEG_BASELINE and header.precision == 8 and layout.bits_allocated == 8:
            return _jpeg_draft(frame, layout, (short, long), target_size, min_long_side)
    except Exception as e:  # the full decoder is the reference; any trouble here falls back to it
        logger.debug("reduced-resolution decode failed, decoding in full: %s", type(e).__name__)
    return None


def _j2k_reduced(
    frame: bytes, header: CodestreamHeader, sides: tuple[int, int], target: int, min_long: int
) -> tuple[np.ndarray, int] | None:
    if header.precision > 16:
        return None
    # Keep at least four times the model's side: the wavelet low-pass is not the area filter the full
    # path resizes with, and at twice the side the probabilities drifted by up to 0.05 on the served
    # model (tests/acceptance/test_acceptance_reduced_decode.py holds them within 0.02). And at least
    # the display rendering's side on the long side (REDUCED_MIN_LONG_SIDE).
    short, long = sides
    k = 0
    while (
        k < header.levels
        and math.ceil(short / 2 ** (k + 1)) >= 4 * target
        and math.ceil(long / 2 ** (k + 1)) >= min_long
    ):
        k += 1
    if k == 0:
        return None
    from PIL import Image

    with Image.open(BytesIO(frame), formats=["JPEG2000"]) as im:
        im.reduce = k  # type: ignore[method-assign,assignment]  # Pillow's J2K plugin: resolution levels to drop
        im.load()
        out = np.asarray(im)
    # Pillow scales samples to the full 8 or 16 bits of its mode and offsets signed samples; undo both.
    container = 8 if out.dtype == np.uint8 else 16
    values = out.astype(np.int32) >> (container - header.precision)
    if header.signed:
        values -= 1 << (header.precision - 1)
    factor = 2**k
    if abs(values.shape[0] - header.rows / factor) > 1 or abs(values.shape[1] - header.columns / factor) > 1:
        return None
    return values, factor


def _jpeg_draft(
    frame: bytes, layout: PixelLayout, sides: tuple[int, int], target: int, min_long: int
) -> tuple[np.ndarray, int] | None:
    short, long = sides
    factor = 1
    while (
        factor < 8
        and math.ceil(short / (factor * 2)) >= 2 * target
        and math.ceil(long / (factor * 2)) >= min_long
    ):
        factor *= 2
    if factor == 1:
        return None
    from PIL import Image

    with Image.open(BytesIO(frame), formats=["JPEG"]) as im:
        im.draft("L", (math.ceil(layout.columns / factor), math.ceil(layout.rows / factor)))
        out = np.asarray(im.convert("L") if im.mode != "L" else im)
    got = round(layout.columns / out.shape[1])
    if got < 2 or got & (got - 1):
        return None
    return out, got


def _stored_values(arr: np.ndarray, layout: PixelLayout) -> np.ndarray:
    """Keep only the Bits Stored bits and give signed data its sign (PS3.5 8.1.1)."""
    bits = layout.bits_stored
    if arr.ndim != 2:
        raise reject(
            "decode_failed", f"The decoded image has {arr.ndim} dimensions; one 2-D frame is expected."
        )
    if arr.dtype.kind not in "ui":
        raise reject(
            "decode_failed", f"The decoder returned {arr.dtype} samples; integer samples are expected."
        )
    # In the container's own width and in place: a 64-Mi-pixel image must not grow int32 temporaries
    # (they took 640 MB, docs/security.md "Memory bounds").
    unsigned = np.uint8 if layout.bits_allocated == 8 else np.uint16
    container = 8 * np.dtype(unsigned).itemsize
    spare = container - bits
    # A native-endian array of the container's width (int16 for signed data) is reinterpreted, not
    # copied: the bits are the same. Writeable, it is corrected in place; read-only (a view on the
    # encoded bytes of a native file), the first pass of the correction writes the one copy.
    same_width = arr.dtype.itemsize == np.dtype(unsigned).itemsize and arr.dtype.isnative
    if same_width and not arr.flags.writeable and spare > 0:
        if layout.pixel_representation == 0:
            masked: np.ndarray = np.bitwise_and(arr.view(unsigned), unsigned((1 << bits) - 1))
            return masked
        shifted = np.left_shift(arr.view(unsigned), spare)
        extended: np.ndarray = shifted.view(np.int8 if container == 8 else np.int16)
        np.right_shift(extended, spare, out=extended)
        return extended
    values = arr.view(unsigned) if same_width and arr.flags.writeable else arr.astype(unsigned)
    if layout.pixel_representation == 0:
        if spare > 0:
            np.bitwise_and(values, unsigned((1 << bits) - 1), out=values)
        return values
    # Two's complement sign extension from Bits Stored: shift the sign bit to the top, then back
    # arithmetically.
    signed = values.view(np.int8 if container == 8 else np.int16)
    if spare > 0:
        np.left_shift(values, spare, out=values)
        np.right_shift(signed, spare, out=signed)
    return signed
