"""The benchmark study: one synthetic 2048 x 2048 12-bit chest radiograph in every lossless syntax.

The image is a ``training.data`` phantom (anatomy, vessels and quantum noise, so codecs see realistic
entropy) letterboxed into a square. Study, Series and SOP Instance UIDs have a fixed length, so
:func:`uid_variants` can give each server request a new study by rewriting bytes in place (a resent study
is answered from the record without analysis, which would not measure anything).
"""

from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UID_ROOT = "1.2.826.0.1.3680043.10.1453.9"  # dxassist root, arc 9: benchmark objects
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
BITS = 12
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


@dataclass(frozen=True)
class Syntax:
    """A transfer syntax the benchmark writes."""

    key: str
    label: str
    uid: str


SYNTAXES: tuple[Syntax, ...] = (
    Syntax("explicit", "Explicit VR LE", EXPLICIT_LE),
    Syntax("rle", "RLE Lossless", RLE),
    Syntax("deflated", "Deflated Explicit VR LE", DEFLATED_LE),
    Syntax("jpegls", "JPEG-LS Lossless", JPEG_LS_LOSSLESS),
    Syntax("j2k", "JPEG 2000 Lossless", J2K_LOSSLESS),
)


@dataclass(frozen=True)
class EncodedFile:
    """One Part-10 file of the benchmark study, or why it could not be written.

    Attributes:
        syntax: The transfer syntax.
        data: File bytes (empty when ``missing`` says why).
        encode_seconds: Time to compress and write.
        missing: Why the encoder is unavailable, or None.
    """

    syntax: Syntax
    data: bytes
    encode_seconds: float
    missing: str | None = None

    @property
    def available(self) -> bool:
        return self.missing is None


class UidTemplate:
    """Fixed-length Study/Series/SOP Instance UIDs: counter 0 is the template, 1..N the variants."""

    def __init__(self) -> None:
        # A fresh run never collides with UIDs in an older record. Components start with a non-zero
        # digit (PS3.5 9.1) and have a fixed width, so every UID has the template's length.
        token = 10**8 + secrets.randbelow(9 * 10**8)
        self._bases = {
            kind: f"{UID_ROOT}.{arc}.{token}" for kind, arc in (("study", 1), ("series", 2), ("sop", 3))
        }

    def uid(self, kind: str, counter: int) -> str:
        if not 0 <= counter < 9 * 10**7:
            raise ValueError(f"UID counter {counter} is outside 0..{9 * 10**7 - 1}.")
        return f"{self._bases[kind]}.{10**7 + counter}"


def chest_pixels(size: int = 2048, *, seed: int = 7) -> np.ndarray:
    """A ``size`` x ``size`` uint16 12-bit chest radiograph (phantom letterboxed on its background)."""
    rng = np.random.default_rng(seed)
    try:
        from training.data import generate_phantom
    except ImportError:  # a server-only install: a smooth gradient with quantum-like noise instead
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        image = (
            0.3 + 0.4 * yy + 0.1 * np.sin(xx * 6.0) + rng.normal(0.0, 0.01, (size, size)).astype(np.float32)
        )
    else:
        image = generate_phantom(rng, findings={"nodule": True}, size_range=(size, size), view="PA").image
    rows, cols = image.shape
    square = np.full((size, size), float(np.median(image[:, :8])), dtype=np.float32)
    top, left = (size - rows) // 2, (size - cols) // 2
    square[top : top + rows, left : left + cols] = image
    top_value = (1 << BITS) - 1
    return np.clip(np.rint(square * (0.92 * top_value) + 0.04 * top_value), 0, top_value).astype(np.uint16)


def _dataset(pixels: np.ndarray, uids: UidTemplate) -> object:
    from pydicom.dataset import Dataset

    top_value = (1 << BITS) - 1
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_PRESENTATION
    ds.SOPInstanceUID = uids.uid("sop", 0)
    ds.StudyInstanceUID = uids.uid("study", 0)
    ds.SeriesInstanceUID = uids.uid("series", 0)
    ds.Modality = "DX"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyDate = "20260105"
    ds.StudyTime = "091500"
    ds.AccessionNumber = "BENCH0001"
    ds.Manufacturer = "DXASSIST SYNTHETIC PHANTOM"
    ds.InstitutionName = "SYNTHETIC DATA - NOT A HOSPITAL"
    ds.StudyDescription = "SYNTHETIC CHEST PHANTOM (BENCHMARK)"
    ds.PatientName = "SYNTHETIC^BENCHMARK"
    ds.PatientID = "SYN-BENCH-0001"
    ds.IssuerOfPatientID = "DXASSIST-SYNTH"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = BITS
    ds.HighBit = BITS - 1
    ds.PixelRepresentation = 0
    ds.ImagerPixelSpacing = [0.175, 0.175]
    ds.PixelSpacing = [0.175, 0.175]
    # A window in the header, as modalities write for presentation images (else a percentile window).
    ds.WindowCenter = round(0.5 * top_value, 1)
    ds.WindowWidth = round(0.9 * top_value, 1)
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _write(ds: object, syntax_uid: str) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset

    assert isinstance(ds, Dataset)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax_uid
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _missing_encoder(syntax: Syntax) -> str | None:
    if syntax.uid in (EXPLICIT_LE, DEFLATED_LE):
        return None
    from pydicom.pixels.encoders.base import get_encoder

    encoder = get_encoder(syntax.uid)
    if encoder.is_available:
        return None
    needs = "; ".join(f"{name}: {', '.join(deps)}" for name, deps in encoder.missing_dependencies)
    return f"no {syntax.label} encoder in this venv ({needs or 'no plugin'})"


def encode_all(pixels: np.ndarray, uids: UidTemplate) -> list[EncodedFile]:
    """Write ``pixels`` in every syntax of :data:`SYNTAXES` whose encoder is installed."""
    out: list[EncodedFile] = []
    for syntax in SYNTAXES:
        try:
            missing = _missing_encoder(syntax)
        except (NotImplementedError, ValueError) as e:
            missing = f"pydicom has no {syntax.label} encoder ({e})"
        if missing is not None:
            out.append(EncodedFile(syntax, b"", 0.0, missing))
            continue
        t0 = time.perf_counter()
        ds = _dataset(pixels, uids)
        if syntax.uid not in (EXPLICIT_LE, DEFLATED_LE):
            # Keep the template SOP Instance UID: pydicom would otherwise make a new one on compression.
            ds.compress(syntax.uid, pixels, generate_instance_uid=False)  # type: ignore[attr-defined]
        data = _write(ds, syntax.uid)
        out.append(EncodedFile(syntax, data, time.perf_counter() - t0))
    return out


def uid_variants(data: bytes, uids: UidTemplate, counters: range) -> list[bytes]:
    """Copies of ``data`` with new Study/Series/SOP Instance UIDs (same length, rewritten in the header).

    Works for files whose dataset is not deflated; the pixel data is left untouched.

    Raises:
        ValueError: The template UIDs are not found in the header.
    """
    head_end = data.find(_PIXEL_TAG, 132)
    if head_end < 0:
        raise ValueError("The file has no Pixel Data element to stop the header at.")
    head, pixels = data[:head_end], data[head_end:]
    templates = {kind: uids.uid(kind, 0).encode() for kind in ("study", "series", "sop")}
    for kind, old in templates.items():
        if old not in head:
            raise ValueError(f"The {kind} UID template is not in the header; is the dataset deflated?")
    variants = []
    for counter in counters:
        new_head = head
        for kind, old in templates.items():
            new_head = new_head.replace(old, uids.uid(kind, counter).encode())
        variants.append(new_head + pixels)
    return variants


def as_new_study(path: Path, *, patient_id: str | None = None) -> bytes:
    """A DICOM file (a seed study) as a new study: fresh Study, Series and SOP Instance UIDs, pixels
    untouched, so each upload files a new result; ``patient_id`` also moves it to another patient."""
    import uuid

    from pydicom import dcmread

    ds = dcmread(path)
    root = f"2.25.{uuid.uuid4().int}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = root, f"{root}.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{root}.1.1"
    if patient_id is not None:
        ds.PatientID = patient_id
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
