"""DICOM ingest: bytes → validated, decoded grayscale chest radiograph.

Guards run before pydicom parses anything (sizes, Part-10 preamble, transfer syntax, capped inflation
of deflated data, nesting depth, declared lengths); then the header is checked and the pixels are
decoded on arrival. The server and the training data loader both read DICOM through this package.
"""

from ._decode import REDUCED_MIN_LONG_SIDE
from ._errors import (
    KINDS,
    MALFORMED,
    TOO_LARGE,
    UNSUPPORTED_CONTENT,
    UNSUPPORTED_MEDIA,
    DicomMalformed,
    DicomRejected,
    DicomTooLarge,
    DicomUnsupportedContent,
    DicomUnsupportedMedia,
    known_codes,
)
from ._header import ACCEPTED_CLASSES as ACCEPTED_SOP_CLASSES
from ._lazy import LazyInstances
from ._model import Instance, Limits, PatientInfo, Study
from ._plausible import MIN_SIDE
from ._read import MAX_SEQUENCE_DEPTH, one_patient, read_instance, read_study
from ._select import frontal_alternatives, frontal_rank, is_lateral, select_frontal
from ._stable import StudyCollector
from ._syntax import SUPPORTED as SUPPORTED_TRANSFER_SYNTAXES

__all__ = [
    "KINDS",
    "MALFORMED",
    "TOO_LARGE",
    "UNSUPPORTED_CONTENT",
    "UNSUPPORTED_MEDIA",
    "ACCEPTED_SOP_CLASSES",
    "MAX_SEQUENCE_DEPTH",
    "MIN_SIDE",
    "REDUCED_MIN_LONG_SIDE",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "DicomMalformed",
    "DicomRejected",
    "DicomTooLarge",
    "DicomUnsupportedContent",
    "DicomUnsupportedMedia",
    "Instance",
    "LazyInstances",
    "Limits",
    "PatientInfo",
    "Study",
    "StudyCollector",
    "frontal_rank",
    "is_lateral",
    "known_codes",
    "one_patient",
    "read_instance",
    "read_study",
    "frontal_alternatives",
    "select_frontal",
]
