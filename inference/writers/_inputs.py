"""Plain inputs of the writers: which algorithm made a result, and what it found."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._errors import InvalidFinding, WriterError


@dataclass(frozen=True)
class PriorReport:
    """An SR of an earlier result of the same study that a PACS received: the one a new SR replaces.

    Attributes:
        study_instance_uid: Its study (the new SR's too).
        series_instance_uid: Its series.
        sop_class_uid: Its SOP class.
        sop_instance_uid: Its SOP instance.
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class AlgorithmInfo:
    """The algorithm (served model version) that produced a result.

    Attributes:
        name: Registered model name, e.g. ``cxr-findings``.
        version: Registry version of the model, e.g. ``3``.
        sha256: SHA-256 of the ONNX file that was served (hex).
        software_version: Version of the dxassist package that ran it.
        manufacturer: Who made the algorithm.
        synthetic: Whether the model was trained on synthetic data (every output then says so).
    """

    name: str
    version: str
    sha256: str
    software_version: str
    manufacturer: str = "dxassist"
    synthetic: bool = False

    def __post_init__(self) -> None:
        for field in ("name", "version", "sha256", "software_version", "manufacturer"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise WriterError(f"AlgorithmInfo.{field} must be a non-empty string.")
            # LO (64 characters, no backslash) is the tightest VR these strings are written into.
            if field != "sha256" and (len(value) > 64 or "\\" in value):
                raise WriterError(
                    f"AlgorithmInfo.{field} must be at most 64 characters without a backslash "
                    "(it is written into DICOM LO attributes)."
                )


@dataclass(frozen=True)
class OodRefusal:
    """The algorithm refused the image as outside its training distribution ("not assessable").

    Attributes:
        score: The out-of-distribution score (None when it was not finite).
        threshold: The score above which the algorithm refuses an image.
    """

    score: float | None
    threshold: float


@dataclass(frozen=True, eq=False)
class FindingOutput:
    """One finding of an imaging result, as the writers need it.

    Attributes:
        code: Finding code of the model (``nodule``, ``consolidation``, ...).
        display: Human-readable name, e.g. ``Pneumothorax``.
        probability: Calibrated probability in [0, 1].
        positive: Whether the probability reached the operating threshold.
        threshold: Operating threshold on the calibrated probability, in [0, 1].
        box: ``(x0, y0, x1, y1)`` around the hottest region in original pixel coordinates,
            half-open like a numpy slice (columns ``x0 <= x < x1``, rows ``y0 <= y < y1``).
        capture: uint8 RGB ``[rows, columns, 3]``: the radiograph with this finding's heatmap and box
            burned in (``inference.analysis.Rendering.overlay_rgb``), at any size with the source's
            aspect ratio; the Secondary Capture shows it.
    """

    code: str
    display: str
    probability: float
    positive: bool
    threshold: float
    box: tuple[int, int, int, int] | None = None
    capture: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.code or not self.display:
            raise InvalidFinding("A finding needs a non-empty code and display name.")
        for field in ("probability", "threshold"):
            value = float(getattr(self, field))
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise InvalidFinding(
                    f"The {field} of finding {self.code!r} is {value}; a probability is in [0, 1]."
                )
        if self.box is not None:
            if len(self.box) != 4:
                raise InvalidFinding(f"The box of finding {self.code!r} must be (x0, y0, x1, y1).")
            x0, y0, x1, y1 = (int(v) for v in self.box)
            if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
                raise InvalidFinding(
                    f"The box of finding {self.code!r} is {tuple(self.box)}; it needs 0 <= x0 < x1 and "
                    "0 <= y0 < y1."
                )
        if self.capture is not None:
            capture = np.asarray(self.capture)
            if capture.ndim != 3 or capture.shape[2] != 3 or capture.dtype != np.uint8 or 0 in capture.shape:
                raise InvalidFinding(
                    f"The capture of finding {self.code!r} must be uint8 RGB [rows, columns, 3]."
                )

    def check_geometry(self, rows: int, columns: int) -> None:
        """Check that the box fits an image of ``rows`` x ``columns`` and the capture has its aspect ratio.

        Raises:
            InvalidFinding: When they do not.
        """
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x1 > columns or y1 > rows:
                raise InvalidFinding(
                    f"The box of finding {self.code!r} ends at ({x1}, {y1}), outside the "
                    f"{columns} x {rows} source image."
                )
        if self.capture is not None:
            shape = tuple(np.asarray(self.capture).shape[:2])
            # The capture is the source scaled to its own longest side (rounded to whole pixels).
            scale = max(shape) / max(rows, columns)
            expected = (max(1, round(rows * scale)), max(1, round(columns * scale)))
            if any(abs(a - b) > 1 for a, b in zip(shape, expected, strict=True)):
                raise InvalidFinding(
                    f"The capture of finding {self.code!r} is {shape[1]} x {shape[0]}; it must show the "
                    f"{columns} x {rows} source image scaled, with its aspect ratio."
                )
