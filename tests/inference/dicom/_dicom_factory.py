"""Builds small DICOM Part-10 files for tests, valid and hostile, at test time (nothing committed).

Every helper returns the file bytes. Pixel content is a smooth gradient with a bright disc so that
resampling and geometry errors show up in tests.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

PATIENT_ID = "SYN-000042"
PATIENT_NAME = "Phantom^Alice"
STUDY_UID = "1.2.826.0.1.3680043.10.1453.1.1"


def phantom(
    rows: int, columns: int, *, bits: int = 12, disc: tuple[int, int, int] | None = None
) -> np.ndarray:
    """A gradient image with a bright disc at ``(row, column, radius)`` (default: left upper third)."""
    top = (1 << bits) - 1
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    image = 0.15 * top + 0.35 * top * (yy / max(rows - 1, 1)) + 0.1 * top * np.sin(xx / max(columns, 1) * 6.0)
    r0, c0, radius = disc or (rows // 3, columns // 3, max(2, min(rows, columns) // 10))
    image[(yy - r0) ** 2 + (xx - c0) ** 2 <= radius**2] = 0.95 * top
    return np.clip(np.rint(image), 0, top).astype(np.uint16 if bits > 8 else np.uint8)


def dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    sop_class: str = DigitalXRayImageStorageForPresentation,
    view_position: str | None = "PA",
    body_part: str | None = "CHEST",
    study_uid: str = STUDY_UID,
    **extra: object,
) -> Dataset:
    """A DX dataset around ``pixels`` (native encoding); ``extra`` sets further keywords."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = PATIENT_ID
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = "19500201"
    ds.PatientSex = "F"
    ds.IssuerOfPatientID = "HOSPITAL-A"
    ds.AccessionNumber = "ACC1"
    ds.StudyDate = "20261122"
    if view_position is not None:
        ds.ViewPosition = view_position
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8 if pixels.dtype.itemsize == 1 else 16
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.ImagerPixelSpacing = [0.2, 0.2]
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds


def to_bytes(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Write ``ds`` as a Part-10 file in a native, deflated or (already compressed) ``transfer_syntax``."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    if transfer_syntax == ExplicitVRBigEndian and ds.BitsAllocated == 16:
        pixels = np.frombuffer(ds.PixelData, dtype="<u2")
        ds.PixelData = pixels.astype(">u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(
        buffer,
        enforce_file_format=True,
        implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
        little_endian=transfer_syntax != ExplicitVRBigEndian,
    )
    return buffer.getvalue()


def compressed(ds: Dataset, transfer_syntax: str, **options: object) -> bytes:
    """Compress with pydicom's encoders (RLE, JPEG 2000) and write."""
    arr = np.frombuffer(ds.PixelData, dtype=np.uint8 if ds.BitsAllocated == 8 else "<u2").reshape(
        ds.Rows, ds.Columns
    )
    ds.compress(transfer_syntax, arr, **options)
    return to_bytes(ds, transfer_syntax)


def jpeg_baseline(ds: Dataset, quality: int = 95) -> bytes:
    """8-bit baseline JPEG through Pillow, encapsulated by pydicom."""
    arr = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(ds.Rows, ds.Columns)
    return encapsulated(ds, jpeg_frame(arr, quality), JPEGBaseline8Bit)


def jpeg_frame(pixels: np.ndarray, quality: int = 95) -> bytes:
    """An 8-bit baseline JPEG codestream of ``pixels`` (Pillow)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def jp2_frame(pixels: np.ndarray, bits_stored: int) -> bytes:
    """A lossless JPEG 2000 codestream of ``pixels`` in a JP2 file (boxes around the codestream), as some
    encoders write it although DICOM expects the bare codestream."""
    import openjpeg

    jp2 = bytes(openjpeg.encode(pixels, bits_stored=bits_stored, codec_format=1))  # 1: JP2
    assert jp2[4:8] == b"jP  " and b"jp2c" in jp2
    return jp2


def encapsulated(ds: Dataset, frame: bytes, transfer_syntax: str) -> bytes:
    """``ds`` with ``frame`` as its one compressed frame, written in ``transfer_syntax``."""
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return to_bytes(ds, transfer_syntax)


def restate_frame_size(frame: bytes, rows: int, columns: int, *, before_sof: bytes = b"") -> bytes:
    """A compressed ``frame`` claiming another size, the compressed data unchanged.

    Baseline JPEG: the SOF0 segment's height and width, with ``before_sof`` inserted before its marker.
    JPEG 2000 (bare or in a JP2 file): SIZ's image and tile sizes, and the JP2 image header box's.
    """
    out = bytearray(frame)
    sof = out.find(b"\xff\xc0\x00\x0b")
    if sof >= 0:
        struct.pack_into(">HH", out, sof + 5, rows, columns)
        out[sof:sof] = before_sof
        return bytes(out)
    siz = out.find(b"\xff\x4f\xff\x51")
    assert siz >= 0 and not before_sof
    # SIZ: marker, Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz
    struct.pack_into(">IIIIII", out, siz + 8, columns, rows, 0, 0, columns, rows)
    ihdr = out.find(b"ihdr")
    if ihdr >= 0:
        struct.pack_into(">II", out, ihdr + 4, rows, columns)
    return bytes(out)


def simple(rows: int = 64, columns: int = 48, **kwargs: object) -> bytes:
    """A valid small 12-bit DX file in explicit VR little endian."""
    return to_bytes(dataset(phantom(rows, columns), bits_stored=12, **kwargs))  # type: ignore[arg-type]


# ---- hostile files --------------------------------------------------------------------------------


def _explicit_element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def nested_sequences(depth: int, *, defined_length: bool = False) -> bytes:
    """Explicit VR LE bytes of ReferencedImageSequence items nested ``depth`` deep."""
    inner = _explicit_element(0x0008, 0x0100, b"SH", b"CODE01")
    for _ in range(depth):
        if defined_length:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, len(item)) + item
        else:
            item = (
                struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                + inner
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
            )
            inner = (
                struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
                + item
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
            )
    return inner


def with_appended(valid: bytes, extra: bytes) -> bytes:
    """Append raw element bytes to the dataset of an explicit VR LE file (after Pixel Data)."""
    return valid + extra


def deflate_bomb(inflated_bytes: int) -> bytes:
    """A deflated-syntax file whose dataset inflates to ``inflated_bytes`` (mostly one huge OB of zeros)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    buffer = io.BytesIO()
    from pydicom.filewriter import write_file_meta_info

    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [compressor.compress(struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated_bytes))]
    chunk = b"\x00" * (1 << 22)
    left = inflated_bytes
    while left > 0:
        body.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    body.append(compressor.flush())
    return buffer.getvalue() + b"".join(body)


def mutate(ds_factory: Callable[[], Dataset], **changes: object) -> bytes:
    """Build a dataset, change some attributes (after the pixels were set) and write it."""
    ds = ds_factory()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)
