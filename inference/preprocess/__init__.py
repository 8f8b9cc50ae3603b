"""Preprocessing: decoded radiograph → model tensor and the geometry to map results back.

Modality LUT → VOI (window, VOI LUT, or percentile window) → [0, 1] → MONOCHROME1 inversion →
aspect-preserving area resize into an S x S zero-padded square → ``(x - mean) / std``. numpy only; the
server and the training data loader share this one path.
"""

from ._geometry import Geometry
from ._params import PreprocessParams
from ._prepare import Prepared, prepare, prepare_pixels, prepare_unit, to_unit
from ._resize import bilinear, nearest, resize

__all__ = [
    "Geometry",
    "PreprocessParams",
    "Prepared",
    "bilinear",
    "nearest",
    "prepare",
    "prepare_pixels",
    "prepare_unit",
    "resize",
    "to_unit",
]
