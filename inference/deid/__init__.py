"""De-identification for training exports: DICOM PS3.15 Annex E Basic Profile (Table E.1-1, 2026c) with
consistent UID remapping and per-patient date shifting (Retain Longitudinal Temporal Information, Modified
Dates)."""

from inference.deid._deidentify import BurnedInAnnotation, Deidentifier, deid_secret
from inference.deid._errors import DeidError
from inference.deid._profile import (
    BASIC_PROFILE,
    CODE_MEANINGS,
    EDITION,
    METHOD_TEXT,
    RETAIN_LONGITUDINAL_MODIFIED_DATES,
    ProfileUnavailable,
    applied_action,
    basic_action,
    masked_table,
    table,
)

__all__ = [
    "BASIC_PROFILE",
    "CODE_MEANINGS",
    "EDITION",
    "METHOD_TEXT",
    "RETAIN_LONGITUDINAL_MODIFIED_DATES",
    "BurnedInAnnotation",
    "DeidError",
    "Deidentifier",
    "ProfileUnavailable",
    "applied_action",
    "basic_action",
    "deid_secret",
    "masked_table",
    "table",
]
