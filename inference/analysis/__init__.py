"""The imaging analysis: decoded radiograph + served model -> a typed, frozen :class:`Analysis`.

One function (:func:`analyse`; :func:`analyse_now` without the micro-batcher) runs preprocessing, the
model, and the explanation (class activation maps at model resolution, hottest-region boxes, the display
rendering). Every caller uses it: the API and the DICOM listener (through ``inference.services``), the
benchmarks and tests. What drawing needs is kept with each result (:class:`Rendering`, stored as
:class:`StoredRendering`); overlays, heat layers and the PACS Secondary Captures are drawn from it later.

Stage timings: ``dxassist_stage_seconds{stage, model, version}`` (:mod:`inference.analysis._metrics`).
"""

from inference.analysis._analysis import (
    Analysis,
    FindingAnalysis,
    ModelInfo,
    OodAnalysis,
    analyse,
    analyse_now,
    explain,
    prepare_input,
)
from inference.analysis._display import DISPLAY_SIDE, display_shape, render_display
from inference.analysis._errors import AnalysisError, ImageTooSmall, ImageUnusable, RenderingCorrupt
from inference.analysis._metrics import STAGE_SECONDS, STAGES, observe_stage, timed
from inference.analysis._rendering import (
    FindingHeat,
    Rendering,
    StoredRendering,
    finding_heat,
    readable_maps,
    stored_geometry,
)

__all__ = [
    "DISPLAY_SIDE",
    "STAGES",
    "STAGE_SECONDS",
    "Analysis",
    "AnalysisError",
    "FindingAnalysis",
    "FindingHeat",
    "ImageTooSmall",
    "ImageUnusable",
    "ModelInfo",
    "OodAnalysis",
    "Rendering",
    "RenderingCorrupt",
    "StoredRendering",
    "analyse",
    "analyse_now",
    "display_shape",
    "explain",
    "finding_heat",
    "observe_stage",
    "prepare_input",
    "readable_maps",
    "render_display",
    "stored_geometry",
    "timed",
]
