"""De-identification for training exports: DICOM PS3.15 Annex E Basic Profile with consistent UID
remapping and per-patient date shifting (Retain Longitudinal Temporal Information, Modified Dates)."""

from inference.deid._deidentify import BurnedInAnnotation, Deidentifier, deid_secret
from inference.deid._profile import (
    ACTIONS,
    BASIC_PROFILE,
    CODE_MEANINGS,
    METHOD_TEXT,
    RETAIN_LONGITUDINAL_MODIFIED_DATES,
)

__all__ = [
    "ACTIONS",
    "BASIC_PROFILE",
    "CODE_MEANINGS",
    "METHOD_TEXT",
    "RETAIN_LONGITUDINAL_MODIFIED_DATES",
    "BurnedInAnnotation",
    "Deidentifier",
    "deid_secret",
]
