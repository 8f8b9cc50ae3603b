"""Inputs of the writers' tests, made at test time: a small CR chest radiograph of a fake patient,
the algorithm that "analysed" it, and findings (one positive with heatmap and box, two negative).

Nothing here is a real patient: the name, identifiers and dates are invented.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian

from inference.dicom import Instance, Limits, read_instance
from inference.writers import AlgorithmInfo, FindingOutput

ORG_ROOT = "1.2.826.0.1.3680043.10.1453"
STUDY_UID = "1.2.826.0.1.3680043.10.1453.77.1"
SERIES_UID = "1.2.826.0.1.3680043.10.1453.77.1.1"
SOP_UID = "1.2.826.0.1.3680043.10.1453.77.1.1.1"
PATIENT_ID = "SYN-000042"
PATIENT_NAME = "Phantom^Alice^^^"
RESULT_ID = "7f1c2e9a-3b5d-4c8e-9f01-23456789abcd"
CREATED_AT = dt.datetime(2026, 11, 22, 8, 30, 5, 250000, tzinfo=dt.UTC)
ROWS, COLUMNS = 256, 224
BOX = (60, 50, 121, 111)  # x0, y0, x1, y1 (half-open), around the heat peak

ALGORITHM = AlgorithmInfo(
    name="cxr-findings",
    version="3",
    sha256="3f" * 32,
    software_version="0.1.0",
    synthetic=True,
)


def source_dataset(rows: int = ROWS, columns: int = COLUMNS, **extra: object) -> Dataset:
    """A 12-bit CR PA chest radiograph with full patient and study modules (fake patient)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = SOP_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.Modality = "CR"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = "HOSPITAL-A"
    ds.PatientBirthDate = "19500201"
    ds.PatientSex = "F"
    ds.StudyDate = "20261122"
    ds.StudyTime = "081500"
    ds.AccessionNumber = "ACC-2026-0001"
    ds.StudyID = "ST1"
    ds.StudyDescription = "XR CHEST PA"
    ds.ReferringPhysicianName = "Referrer^Robin"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer = "ACME Imaging"
    ds.ImagerPixelSpacing = [0.4, 0.4]
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    yy, xx = np.mgrid[0:rows, 0:columns]
    pixels = 600 + 2800 * yy / rows + 200 * np.sin(xx / columns * 6.0)
    ds.PixelData = np.clip(np.rint(pixels), 0, 4095).astype("<u2").tobytes()
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def source(
    *, rows: int = ROWS, columns: int = COLUMNS, drop: tuple[str, ...] = (), **extra: object
) -> Instance:
    """The fake radiograph read through :func:`inference.dicom.read_instance`, as the server reads it.

    ``drop`` removes attributes (to make a sparse but valid header), ``extra`` sets more.
    """
    ds = source_dataset(rows, columns, **extra)
    for keyword in drop:
        delattr(ds, keyword)
    data = to_bytes(ds)
    return read_instance(data, limits=Limits(max_instance_bytes=1 << 28, max_pixels=1 << 26, max_instances=4))


def heatmap(rows: int = ROWS, columns: int = COLUMNS, peak: tuple[int, int] = (80, 90)) -> np.ndarray:
    """A Gaussian blob of heat in [0, 1] peaking at (row, column)."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    heat = np.exp(-((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2) / (2 * 18.0**2))
    return (heat / heat.max()).astype(np.float32)


def capture(
    rows: int = ROWS,
    columns: int = COLUMNS,
    peak: tuple[int, int] = (80, 90),
    box: tuple[int, int, int, int] | None = BOX,
) -> np.ndarray:
    """The burned-in picture of a finding, drawn as the server draws it (``inference.explain``)."""
    from inference.explain import Box, overlay_rgb

    yy, xx = np.mgrid[0:rows, 0:columns]
    grey = (0.2 + 0.6 * yy / rows).astype(np.float32)  # a plain gradient: grey wherever heat is cold
    outline = Box(*box) if box is not None else None
    return overlay_rgb(grey, heatmap(rows, columns, peak), box=outline, max_side=max(rows, columns))


def findings() -> list[FindingOutput]:
    """Pneumothorax positive (heatmap and box), pleural effusion and nodule negative."""
    return [
        FindingOutput(
            code="pneumothorax",
            display="Pneumothorax",
            probability=0.8312,
            positive=True,
            threshold=0.5,
            box=BOX,
            capture=capture(),
        ),
        FindingOutput(
            code="pleural_effusion",
            display="Pleural effusion",
            probability=0.1234,
            positive=False,
            threshold=0.42,
        ),
        FindingOutput(
            code="nodule",
            display="Lung nodule",
            probability=0.05,
            positive=False,
            threshold=0.3,
            capture=capture(peak=(180, 150), box=None),
        ),
    ]


def algorithm(**changes: object) -> AlgorithmInfo:
    return dataclasses.replace(ALGORITHM, **changes)  # type: ignore[arg-type]
