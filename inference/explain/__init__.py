"""Explanations: CAMs mapped to the image, hottest-region boxes, PNG overlays and rationale text.

Rationales are in English, French and Modern Standard Arabic; finding codes carry SNOMED CT concepts
(:data:`FINDING_CODES`) for FHIR and DICOM SR.
"""

from inference.explain._codes import (
    FINDING_CODES,
    FINDING_DISPLAY,
    FINDINGS,
    LANGUAGES,
    NEWS2_BAND_DISPLAY,
    SNOMED_CT,
    VITAL_DISPLAY,
    Language,
    finding_display,
)
from inference.explain._heatmap import Box, cam_box, cam_to_heatmap, hottest_box
from inference.explain._overlay import COLOUR_LUT, display_size, heat_layer_png, overlay_png, overlay_rgb
from inference.explain._rationale import (
    DEFAULT_LANGUAGE,
    choose_language,
    format_probability,
    imaging_rationale,
    triage_rationale,
)

__all__ = [
    "COLOUR_LUT",
    "DEFAULT_LANGUAGE",
    "FINDINGS",
    "FINDING_CODES",
    "FINDING_DISPLAY",
    "LANGUAGES",
    "NEWS2_BAND_DISPLAY",
    "SNOMED_CT",
    "VITAL_DISPLAY",
    "Box",
    "Language",
    "cam_box",
    "cam_to_heatmap",
    "choose_language",
    "display_size",
    "finding_display",
    "format_probability",
    "heat_layer_png",
    "hottest_box",
    "imaging_rationale",
    "overlay_png",
    "overlay_rgb",
    "triage_rationale",
]
