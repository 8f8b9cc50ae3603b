"""Chest radiographs for the PACS tests, built with pydicom (nothing on disk in the repository).

A 128x128 CR, 12-bit MONOCHROME2. ``blob=True`` paints the bright square that makes the tiny imaging
model of ``tests/tiny_models.py`` call its last findings positive (so heatmap captures are made).
``j2k=True`` encodes the pixels as JPEG 2000 lossless (pylibjpeg-openjpeg), which ``storescu`` sends only
with ``-xv``.
"""

from __future__ import annotations

import uuid
from io import BytesIO
from pathlib import Path

import numpy as np

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
PATIENT_ID = "IPP-PACS-5512"
PATIENT_NAME = "Vantongeren^Odalys"


def new_uid() -> str:
    """A fresh UID of the 2.25 (UUID) form."""
    return f"2.25.{uuid.uuid4().int}"


def chest_cr(
    *,
    study: str,
    series: str | None = None,
    sop: str | None = None,
    view: str = "PA",
    blob: bool = True,
    j2k: bool = False,
    modality: str = "CR",
    size: int = 128,
    seed: int = 0,
) -> bytes:
    """One chest CR instance as a Part-10 file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 400, size=(size, size), dtype=np.uint16)
    if blob:
        side, top = size * 3 // 8, size // 4
        pixels[top : top + side, top : top + side] = 4000
    sop = sop or new_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CR_IMAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or new_uid()
    ds.Modality = modality
    ds.Manufacturer = "Test Imaging Co"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19470211"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-PACS-1"
    ds.StudyID = "1"
    ds.StudyDate = "20260301"
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1 if view == "PA" else 2
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"] if view == "PA" else ["P", "F"]
    ds.Rows = size
    ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    if j2k:
        ds.compress(JPEG2000Lossless)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write a file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_large_cr(path: Path, *, side: int, study: str | None = None, chunk_rows: int = 256) -> Path:
    """Write a ``side`` x ``side`` 16-bit CR to ``path`` without holding its pixels in memory.

    The header is written by pydicom; the Pixel Data element (explicit VR little endian, OW) is appended
    row band by row band, so a file of hundreds of megabytes costs a few megabytes to make.
    """
    import struct

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop = new_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CR_IMAGE, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study or new_uid(), new_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
        PATIENT_NAME,
        PATIENT_ID,
        "19470211",
        "F",
    )
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260301", "101500", "ACC-BIG", "1"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.PatientOrientation = ["L", "F"]
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        ds.save_as(out, enforce_file_format=True)
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, side * side * 2))
        rng = np.random.default_rng(side)
        for top in range(0, side, chunk_rows):
            rows = min(chunk_rows, side - top)
            band = rng.integers(0, 400, size=(rows, side), dtype=np.uint16)
            band[:, side // 4 : side // 2] += 3000  # a bright region: a plausible, non-blank radiograph
            out.write(band.astype("<u2").tobytes())
    return path
