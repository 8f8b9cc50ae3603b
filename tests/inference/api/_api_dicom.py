"""Small DICOM files for the API tests, built with pydicom (no fixtures on disk).

A 128x128 CR chest image, 12-bit MONOCHROME2, explicit VR little endian. ``blob=True`` paints a bright
square that makes the tiny imaging model of ``tests/tiny_models.py`` call findings positive; without it
the image is low noise and every finding is negative. The patient's name, identifier and birth date are
distinctive so the tests can look for them in the logs.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

PATIENT_NAME = "Quixley^Zephyrine"
PATIENT_ID = "IPP-API-7731"
BIRTH_DATE = "19410317"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.10.1453.99"


def uid(*parts: int) -> str:
    """A test UID under the test root."""
    return ".".join([ROOT, *(str(p) for p in parts)])


def chest_dicom(
    *,
    study: str,
    sop: str,
    series: str | None = None,
    modality: str = "CR",
    view: str | None = "PA",
    blob: bool = False,
    patient_id: str = PATIENT_ID,
    patient_name: str = PATIENT_NAME,
    birth_date: str = BIRTH_DATE,
    size: int = 128,
    seed: int = 0,
) -> bytes:
    """A DICOM Part-10 file of one chest image."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 400, size=(size, size), dtype=np.uint16)
    if blob:
        side = size * 3 // 8
        top = size // 4
        pixels[top : top + side, top : top + side] = 4000
    meta = FileMetaDataset()
    sop_class = CT_IMAGE if modality == "CT" else CR_IMAGE
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid(0)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or f"{study}.1"
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    if view is not None:
        ds.ViewPosition = view
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC0001"
    ds.StudyDate = "20260105"
    ds.Rows = size
    ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def related_body(
    parts: list[tuple[str, bytes]], boundary: str = "dxassist-test-boundary"
) -> tuple[bytes, str]:
    """A ``multipart/related`` body and its Content-Type, one ``(media type, bytes)`` per part."""
    chunks = []
    for media_type, content in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
