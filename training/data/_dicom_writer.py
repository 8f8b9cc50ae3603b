"""Write phantoms as DICOM Part-10 chest radiographs (CR or DX for presentation), byte-reproducibly.

Every identifier, date and UID is derived from ``(seed, index)`` with
``pydicom.uid.generate_uid(prefix=..., entropy_srcs=[...])``; nothing reads the clock, and the file meta
names a fixed implementation, so the same seed always gives the same bytes. Patients are obviously
fake (``SYNTHETIC^PATIENT^0042``, issuer ``DXASSIST-SYNTH``) and every file says it is synthetic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

from training.data._phantom import LATERAL_VIEWS, Phantom
from training.errors import TrainingError

UID_PREFIX = "1.2.826.0.1.3680043.10.1453."
ISSUER = "DXASSIST-SYNTH"
IMPLEMENTATION_VERSION = "DXASSIST_SYN_1"
_CR = "1.2.840.10008.5.1.4.1.1.1"
_DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_RLE = "1.2.840.10008.1.2.5"
_BASE_DATE = dt.date(2024, 12, 2)  # + up to 699 days: every date before 2026-11 (a record drops future dates)


class DicomWriteError(TrainingError, ValueError):
    """A phantom could not be written with the requested encoding."""


@dataclass(frozen=True)
class DicomStyle:
    """How a phantom is encoded, so that the reader and preprocessing see the variety of real files.

    Attributes:
        modality: ``CR`` (CR Image Storage) or ``DX`` (Digital X-Ray Image Storage - For Presentation).
        photometric: ``MONOCHROME2`` (high = bright) or ``MONOCHROME1`` (stored values inverted).
        bits_stored: 12, 14 or 16 (BitsAllocated is always 16).
        rescale_slope: Modality LUT slope written to the file.
        rescale_intercept: Modality LUT intercept written to the file.
        voi_sigmoid: Write VOILUTFunction SIGMOID with the window.
        transfer_syntax: ``explicit`` (Explicit VR Little Endian) or ``rle`` (RLE Lossless).
    """

    modality: Literal["CR", "DX"] = "CR"
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    bits_stored: Literal[12, 14, 16] = 12
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    voi_sigmoid: bool = False
    transfer_syntax: Literal["explicit", "rle"] = "explicit"

    def __post_init__(self) -> None:
        if self.modality not in ("CR", "DX"):
            raise DicomWriteError(f"Modality {self.modality!r} is not supported; use CR or DX.")
        if self.photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise DicomWriteError(f"Photometric {self.photometric!r} is not supported; use MONOCHROME1/2.")
        if self.bits_stored not in (12, 14, 16):
            raise DicomWriteError(f"BitsStored {self.bits_stored} is not supported; use 12, 14 or 16.")
        if self.transfer_syntax not in ("explicit", "rle"):
            raise DicomWriteError(
                f"Transfer syntax {self.transfer_syntax!r} is not supported; use explicit or rle."
            )
        if self.rescale_slope <= 0:
            raise DicomWriteError(f"RescaleSlope must be positive, not {self.rescale_slope}.")


def random_style(rng: np.random.Generator, *, rle_fraction: float = 0.0) -> DicomStyle:
    """Draw an encoding: mostly CR/DX MONOCHROME2 12-bit, with 1, 14/16-bit, rescale and SIGMOID variants."""
    modality = "DX" if rng.random() < 0.5 else "CR"
    photometric = "MONOCHROME1" if rng.random() < 0.25 else "MONOCHROME2"
    bits = int(rng.choice([12, 12, 14, 16]))
    slope, intercept = [(1.0, 0.0), (1.0, 0.0), (0.5, 0.0), (1.0, -1024.0)][int(rng.integers(0, 4))]
    return DicomStyle(
        modality=modality,  # type: ignore[arg-type]
        photometric=photometric,  # type: ignore[arg-type]
        bits_stored=bits,  # type: ignore[arg-type]
        rescale_slope=slope,
        rescale_intercept=intercept,
        voi_sigmoid=bool(rng.random() < 0.15),
        transfer_syntax="rle" if rng.random() < rle_fraction else "explicit",
    )


def synthetic_uid(*parts: object) -> str:
    """A UID under the dxassist synthetic root, a pure function of ``parts``."""
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=["dxassist-synthetic", *map(str, parts)]))


def _digest_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def stored_pixels(image: np.ndarray, style: DicomStyle) -> tuple[np.ndarray, float, float]:
    """Quantise a [0, 1] phantom image into stored values and pick a window in rescaled units.

    Returns:
        ``(stored uint16 array, window centre, window width)``.
    """
    top = (1 << style.bits_stored) - 1
    # Keep headroom under the top so the modality LUT never needs values outside BitsStored.
    values = np.rint(image * (0.92 * top) + 0.04 * top)
    if style.photometric == "MONOCHROME1":
        values = top - values
    stored = np.clip(values, 0, top).astype(np.uint16)
    rescaled_lo = 0.04 * top * style.rescale_slope + style.rescale_intercept
    rescaled_span = 0.92 * top * style.rescale_slope
    # The window covers roughly lungs to bone; it is the same range whichever way the values run.
    center = rescaled_lo + 0.5 * rescaled_span
    width = 0.95 * rescaled_span
    return stored, round(center, 2), round(width, 2)


def write_study(
    phantom: Phantom,
    path: Path,
    *,
    index: int,
    seed: int,
    style: DicomStyle | None = None,
    study_index: int | None = None,
    series_number: int = 1,
) -> Path:
    """Write one phantom as a DICOM Part-10 instance.

    Args:
        phantom: The phantom to write.
        path: Output file (parents are created).
        index: Instance number in the data set; with ``seed`` it determines the SOP Instance UID.
        seed: Data-set seed; the same ``(seed, index, ...)`` always gives byte-identical files.
        style: Encoding; default CR, MONOCHROME2, 12 bits, explicit VR little endian.
        study_index: Study (and patient) this instance belongs to; defaults to ``index``. Give two
            instances the same ``study_index`` (and different ``series_number``) to put a lateral
            companion into the same study.
        series_number: Series number inside the study.

    Returns:
        ``path``.

    Raises:
        DicomWriteError: If the style cannot encode the image.
    """
    ds = _dataset(
        phantom, index=index, seed=seed, style=style, study_index=study_index, series_number=series_number
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _dataset(
    phantom: Phantom,
    *,
    index: int,
    seed: int,
    style: DicomStyle | None,
    study_index: int | None,
    series_number: int,
) -> Dataset:
    from pydicom.dataset import Dataset, FileMetaDataset

    style = style or DicomStyle()
    study = index if study_index is None else study_index
    rows, cols = phantom.image.shape
    stored, center, width = stored_pixels(phantom.image, style)
    lateral = phantom.view in LATERAL_VIEWS

    study_uid = synthetic_uid("study", seed, study)
    series_uid = synthetic_uid("series", seed, study, series_number)
    sop_uid = synthetic_uid("instance", seed, index)
    sop_class = _DX_PRESENTATION if style.modality == "DX" else _CR
    syntax = _RLE if style.transfer_syntax == "rle" else _EXPLICIT_LE

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = synthetic_uid("implementation", IMPLEMENTATION_VERSION)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"] if style.modality == "DX" else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid

    h = _digest_int("patient", seed, study)
    date = _BASE_DATE + dt.timedelta(days=_digest_int("date", seed, study) % 700)
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=h % (365 * 70))
    time = f"{8 + h % 10:02d}{h // 10 % 60:02d}{h // 600 % 60:02d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AccessionNumber = f"SYNACC{study:06d}"
    ds.Modality = style.modality
    ds.Manufacturer = "DXASSIST SYNTHETIC PHANTOM"
    ds.InstitutionName = "SYNTHETIC DATA - NOT A HOSPITAL"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC CHEST PHANTOM"
    ds.SeriesDescription = f"CHEST {phantom.view}"
    ds.ManufacturerModelName = "dxassist phantom generator"

    ds.PatientName = f"SYNTHETIC^PATIENT^{study:04d}"
    ds.PatientID = f"SYN-{study:06d}"
    ds.IssuerOfPatientID = ISSUER
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = "FMO"[h % 3] if h % 7 else "O"
    ds.PatientIdentityRemoved = "NO"

    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = phantom.view
    ds.PatientOrientation = ["P", "F"] if lateral else ["L", "F"]
    ds.ImageLaterality = "U"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{study % 100000:d}"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.ImageComments = "Synthetic phantom generated by dxassist; not a patient image."
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    spacing = round(430.0 / max(rows, cols), 4)  # a 43 cm detector across the longer side
    ds.ImagerPixelSpacing = [spacing, spacing]

    if style.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if style.photometric == "MONOCHROME1" else 1
        ds.PresentationLUTShape = "INVERSE" if style.photometric == "MONOCHROME1" else "IDENTITY"
        ds.RescaleType = "US"
        ds.DetectorType = "SCINTILLATOR"
        chest = Dataset()
        chest.CodeValue = "51185008"
        chest.CodingSchemeDesignator = "SCT"
        chest.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = [chest]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = style.photometric
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = style.bits_stored
    ds.HighBit = style.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{style.rescale_slope:g}"
    ds.RescaleIntercept = f"{style.rescale_intercept:g}"
    ds.WindowCenter = f"{center:g}"
    ds.WindowWidth = f"{width:g}"
    if style.voi_sigmoid:
        ds.VOILUTFunction = "SIGMOID"

    if style.transfer_syntax == "rle":
        try:
            ds.compress(_RLE, stored, encoding_plugin="pydicom", generate_instance_uid=False)
        except Exception as e:  # pydicom raises several types from its encoders
            raise DicomWriteError(f"RLE Lossless encoding of a {rows}x{cols} image failed: {e}") from e
    else:
        ds.PixelData = stored.astype("<u2", copy=False).tobytes()
        ds["PixelData"].VR = "OW"
    return ds


def study_bytes(
    phantom: Phantom,
    *,
    index: int,
    seed: int,
    style: DicomStyle | None = None,
    study_index: int | None = None,
    series_number: int = 1,
) -> bytes:
    """The exact Part-10 bytes :func:`write_study` writes, without touching the disk."""
    import io

    buf = io.BytesIO()
    ds = _dataset(
        phantom, index=index, seed=seed, style=style, study_index=study_index, series_number=series_number
    )
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
