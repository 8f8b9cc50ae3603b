"""Reading and checking header attributes of a parsed dataset (no pixel data touched here)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _plausible
from ._decode import PixelLayout
from ._errors import reject
from ._model import Limits, PatientInfo

if TYPE_CHECKING:
    from pydicom import Dataset

logger = logging.getLogger(__name__)

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SC_GRAYSCALE_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
SC_GRAYSCALE_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
SC_CLASSES = frozenset({SECONDARY_CAPTURE, SC_GRAYSCALE_BYTE, SC_GRAYSCALE_WORD})
ACCEPTED_CLASSES = frozenset({CR_IMAGE, DX_PRESENTATION, DX_PROCESSING}) | SC_CLASSES
RADIOGRAPHY = frozenset({"CR", "DX"})
CHEST = frozenset({"CHEST", "THORAX"})
VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# Identifiers of value multiplicity 1 that a result is filed under: several values are refused.
_SINGLE_IDENTIFIERS = frozenset({"PatientID", "IssuerOfPatientID"})
# Descriptive attributes that modalities do write with several values (a name with a backslash): their
# first value is the sane reading, as the writers mend them (``inference.writers._common``). Any other
# attribute read here decides what the image is (UIDs, modality, body part, view, laterality, pixels'
# meaning): several values of it are refused, not guessed.
_FIRST_VALUE_READS = frozenset(
    {"PatientName", "PatientSex", "PatientBirthDate", "StudyDate", "AccessionNumber"}
)
_SEX = {"M": "male", "F": "female", "O": "other"}
_EARLIEST_DATE = dt.date(1850, 1, 1)
# Every C0 control and DEL, except ESC (ISO 2022 character set switches in PN and LO values).
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")
# PS3.5 Table 6.2-1 maxima (PN: three component groups of 64); SH Accession Number is given the LO
# length because some systems send longer numbers, which the record still holds.
_MAX_LENGTHS = {
    "PatientID": 64,
    "IssuerOfPatientID": 64,
    "PatientName": 194,
    "AccessionNumber": 64,
    "PatientSex": 16,
    "ViewPosition": 16,
    "BodyPartExamined": 16,
    "ImageLaterality": 16,
    "Laterality": 16,
    "Modality": 16,
    "PhotometricInterpretation": 16,
    "VOILUTFunction": 16,
}


def _text(ds: Dataset, keyword: str) -> str | None:
    """Return a stripped string value, or None when absent or empty.

    Raises:
        DicomRejected: ``multi_valued_identifier`` for a Patient ID or Issuer of Patient ID with
            several values (VM 1 in the standard: which one names the patient cannot be guessed),
            ``multi_valued_attribute`` for any other attribute read here with several values (all have
            value multiplicity 1: UIDs, modality, body part, view, laterality...), except the
            descriptive ones of :data:`_FIRST_VALUE_READS`, whose first value is read.
        DicomRejected: ``invalid_characters`` for control characters inside the value (a NUL in a
            Patient ID would be filed, then break PostgreSQL), ``value_too_long`` beyond the length its
            value representation allows (:data:`_MAX_LENGTHS`).
    """
    value = ds.get(keyword)
    if value is None:
        return None
    if _several(value):
        # str() of a MultiValue is "['IPP1', 'IPP2']": filed as it is, it names no patient, no study, no
        # view. Every attribute read here has value multiplicity 1 in the standard.
        count = len(value)
        if keyword in _SINGLE_IDENTIFIERS:
            raise reject(
                "multi_valued_identifier",
                f"The attribute {keyword} holds {count} values; it identifies one patient, so send "
                "exactly one value (other identifiers of the patient go in Other Patient IDs Sequence).",
            )
        if keyword not in _FIRST_VALUE_READS:
            raise reject(
                "multi_valued_attribute",
                f"The attribute {keyword} holds {count} values where the standard allows one (value "
                "multiplicity 1); send the one value the modality recorded.",
            )
        value = value[0]
    text = str(value).strip().strip("\x00").strip()
    if _CONTROL.search(text):
        raise reject(
            "invalid_characters",
            f"The attribute {keyword} holds control characters; send printable text (ESC only for a "
            "character set switch).",
        )
    limit = _MAX_LENGTHS.get(keyword)
    if limit is not None and len(text) > limit:
        raise reject(
            "value_too_long",
            f"The attribute {keyword} has more than the {limit} characters its value representation "
            "allows; send the value the modality recorded.",
        )
    return text or None


def _several(value: object) -> bool:
    """Whether a pydicom value holds more than one value (a MultiValue; a string is one value)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes) and len(value) > 1


def _code_value(value: str | None) -> str:
    """A code string value made safe to echo in a message (CS values carry no patient data)."""
    if value is None:
        return "absent"
    return repr(re.sub(r"[^A-Za-z0-9 _\-]", "?", value)[:16])


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise reject("missing_attribute", f"The required attribute {keyword} is missing or empty.")
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise reject("bad_pixel_attributes", f"The attribute {keyword} is not a single integer.") from e


def _floats(ds: Dataset, keyword: str) -> tuple[float, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    # MultiValue, list and tuple hold several values; DSfloat, IS, float and str hold one.
    items = list(value) if hasattr(value, "__len__") and not isinstance(value, str | bytes) else [value]
    out: list[float] = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            return ()
        if not math.isfinite(number):
            return ()
        out.append(number)
    return tuple(out)


def uid(ds: Dataset, keyword: str) -> str:
    """Return a UID attribute after checking it is digits and dots (safe in paths and URLs)."""
    value = _text(ds, keyword)
    if value is None:
        raise reject("missing_attribute", f"The required attribute {keyword} is missing or empty.")
    if len(value) > 64 or not _UID.fullmatch(value):
        raise reject(
            "invalid_uid",
            f"The attribute {keyword} is not a valid UID; a UID has digits and dots only, "
            "at most 64 characters.",
        )
    return value


def check_content(ds: Dataset) -> tuple[str, str]:
    """Check this is a single-frame grayscale chest radiograph; return ``(modality, sop_class_uid)``."""
    sop_class = _text(ds, "SOPClassUID") or ""
    modality = (_text(ds, "Modality") or "").upper()
    if modality not in RADIOGRAPHY and not (modality in ("", "OT") and sop_class in ACCEPTED_CLASSES):
        raise reject(
            "unsupported_modality",
            f"Modality {_code_value(modality or None)} is not accepted; only chest radiographs "
            "(Modality CR or DX, or a grayscale secondary capture) are analysed.",
        )
    if sop_class not in ACCEPTED_CLASSES:
        shown = (
            sop_class
            if _UID.fullmatch(sop_class) and len(sop_class) <= 64
            else _code_value(sop_class or None)
        )
        raise reject(
            "unsupported_sop_class",
            f"SOP Class {shown} is not "
            "accepted; send CR Image, Digital X-Ray Image or grayscale Secondary Capture instances.",
        )
    body_part = _text(ds, "BodyPartExamined")
    if body_part is not None and body_part.upper() not in CHEST:
        raise reject(
            "not_chest",
            f"Body Part Examined is {_code_value(body_part)}; "
            "only CHEST or THORAX (or no value) is accepted.",
        )
    frames = _int(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise reject(
            "multi_frame", f"The instance has {frames} frames; only single-frame images are accepted."
        )
    samples = _int(ds, "SamplesPerPixel", 1)
    photometric = (_text(ds, "PhotometricInterpretation") or "").upper()
    if not photometric:
        raise reject("missing_attribute", "The required attribute PhotometricInterpretation is missing.")
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise reject(
            "not_grayscale",
            f"Photometric Interpretation {_code_value(photometric)} with {samples} samples per pixel is not "
            "accepted; only grayscale MONOCHROME1 or MONOCHROME2 images are.",
        )
    return modality or ("DX" if sop_class not in SC_CLASSES else "OT"), sop_class


def pixel_layout(ds: Dataset, limits: Limits) -> PixelLayout:
    """Check the pixel description and the pixel-count limit; nothing is decoded yet."""
    rows = _int(ds, "Rows")
    columns = _int(ds, "Columns")
    allocated = _int(ds, "BitsAllocated")
    stored = _int(ds, "BitsStored")
    high_bit = _int(ds, "HighBit", stored - 1)
    representation = _int(ds, "PixelRepresentation", 0)
    if rows <= 0 or columns <= 0:
        raise reject("bad_pixel_attributes", f"Rows and Columns must be positive, not {rows} x {columns}.")
    if rows * columns > limits.max_pixels:
        raise reject(
            "too_large",
            f"The image declares {rows} x {columns} = {rows * columns} pixels, more than the limit of "
            f"{limits.max_pixels} pixels.",
        )
    if allocated not in (8, 16):
        raise reject("bad_pixel_attributes", f"Bits Allocated is {allocated}; 8 or 16 are accepted.")
    if not 1 <= stored <= allocated:
        raise reject(
            "bad_pixel_attributes",
            f"Bits Stored is {stored} with Bits Allocated {allocated}; "
            "Bits Stored must be 1 to Bits Allocated.",
        )
    if high_bit != stored - 1:
        raise reject(
            "bad_pixel_attributes", f"High Bit is {high_bit}; it must be Bits Stored - 1 = {stored - 1}."
        )
    if representation not in (0, 1):
        raise reject(
            "bad_pixel_attributes", f"Pixel Representation is {representation}; 0 or 1 are accepted."
        )
    return PixelLayout(rows, columns, allocated, stored, representation)


def windows(ds: Dataset) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """Return window centres, widths (same length, widths > 0) and the VOI LUT function."""
    centers, widths = _plausible.windows(ds)  # refuses NaN, infinities and text
    pairs = [(c, w) for c, w in zip(centers, widths, strict=False) if w > 0]
    function = (_text(ds, "VOILUTFunction") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS:
        logger.info("unknown VOI LUT Function, using LINEAR")
        function = "LINEAR"
    return tuple(c for c, _ in pairs), tuple(w for _, w in pairs), function


def voi_lut(ds: Dataset, little_endian: bool) -> tuple[int, int, np.ndarray] | None:
    """Return ``(first_mapped, bits, table)`` of the first VOI LUT item, None when absent or unusable."""
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        data: Any = item.LUTData
        entries = entries or 65536
        if isinstance(data, bytes | bytearray):
            dtype = (
                np.dtype(np.uint8) if len(data) == entries else np.dtype("<u2" if little_endian else ">u2")
            )
            table = np.frombuffer(data, dtype=dtype).astype(np.float32)
        else:
            table = np.asarray(list(data) if not isinstance(data, int) else [data], dtype=np.float32)
        if ds.get("PixelRepresentation", 0) == 1 and first >= 1 << 15:
            first -= 1 << 16  # the descriptor's first value is SS for signed pixels, read here as US
        if table.size < entries or not 1 <= bits <= 16:
            raise ValueError("inconsistent VOI LUT")
        return first, bits, table[:entries]
    except Exception:
        logger.info("VOI LUT Sequence present but unusable; it is ignored")
        return None


def spacing(ds: Dataset) -> tuple[float, float] | None:
    """Pixel Spacing, else Imager Pixel Spacing, in mm (row, column); None when absent or invalid."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds, keyword)
        if len(values) == 2 and values[0] > 0 and values[1] > 0:
            return values[0], values[1]
    return None


def iso_date(ds: Dataset, keyword: str) -> str | None:
    """A DA value as ``YYYY-MM-DD``; None when absent, not a calendar date, or not plausible.

    Plausible is from 1850 to today in the earliest-ahead time zone (UTC+14): a birth or study date in
    the future or two centuries ago is a typing error, and is treated as absent rather than filed.
    """
    text = _text(ds, keyword)
    if text is None:
        return None
    digits = text.replace(".", "").replace("-", "")
    try:
        day = dt.datetime.strptime(digits[:8], "%Y%m%d").date() if len(digits) == 8 else None
    except ValueError:
        return None
    latest = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=14)).date()
    if day is None or not _EARLIEST_DATE <= day <= latest:
        return None
    return day.isoformat()


def patient(ds: Dataset) -> PatientInfo:
    """The patient module; Patient ID is required because every result is filed against a patient."""
    patient_id = _text(ds, "PatientID")
    if patient_id is None:
        raise reject("missing_attribute", "The required attribute PatientID (0010,0020) is missing or empty.")
    sex = _text(ds, "PatientSex")
    return PatientInfo(
        patient_id=patient_id,
        issuer=_text(ds, "IssuerOfPatientID"),
        name=_text(ds, "PatientName"),
        birth_date=iso_date(ds, "PatientBirthDate"),
        sex=None if sex is None else _SEX.get(sex.upper(), "unknown"),
    )


def text(ds: Dataset, keyword: str) -> str | None:
    """Public wrapper of the stripped-string accessor for the reader."""
    return _text(ds, keyword)
