"""Explanations: CAMs mapped to the image, hottest-region boxes, PNG overlays and rationale text.

Rationales are in English, French and Modern Standard Arabic; finding codes, their SNOMED CT concepts
and display names are in :mod:`inference.vocabulary`.
"""

from inference.explain._heatmap import Box, cam_box, cam_to_heatmap, cam_to_levels, hottest_box
from inference.explain._overlay import (
    COLOUR_LUT,
    OVERLAY_FLOOR,
    display_size,
    heat_layer_png,
    overlay_png,
    overlay_rgb,
)
from inference.explain._png import encode_png, picture_thread
from inference.explain._rationale import (
    DEFAULT_LANGUAGE,
    choose_language,
    format_probability,
    imaging_rationale,
    triage_rationale,
)

__all__ = [
    "COLOUR_LUT",
    "OVERLAY_FLOOR",
    "DEFAULT_LANGUAGE",
    "Box",
    "cam_box",
    "cam_to_heatmap",
    "cam_to_levels",
    "choose_language",
    "display_size",
    "encode_png",
    "picture_thread",
    "format_probability",
    "heat_layer_png",
    "hottest_box",
    "imaging_rationale",
    "overlay_png",
    "overlay_rgb",
    "triage_rationale",
]
