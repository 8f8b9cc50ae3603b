"""Preprocessing parameters, carried in the ONNX metadata (``dxassist.preprocess``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PreprocessParams:
    """How a decoded radiograph becomes the model input.

    Attributes:
        input_size: Side S of the square model input.
        mean: Subtracted after scaling to [0, 1].
        std: Divides after subtracting ``mean``.
        window_percentiles: Low and high percentiles of the modality values used as the window when the
            file has neither a window nor a VOI LUT.
    """

    input_size: int = 256
    mean: float = 0.5
    std: float = 0.25
    window_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        lo, hi = self.window_percentiles
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8, not {self.input_size}.")
        if not self.std > 0:
            raise ValueError(f"std must be positive, not {self.std}.")
        if not 0 <= lo < hi <= 100:
            raise ValueError(
                f"window_percentiles must satisfy 0 <= low < high <= 100, not {self.window_percentiles}."
            )

    def to_metadata(self) -> dict[str, Any]:
        """Return the JSON-ready form stored under ``dxassist.preprocess``."""
        return {
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "window_percentiles": [float(self.window_percentiles[0]), float(self.window_percentiles[1])],
        }

    @classmethod
    def from_metadata(cls, d: Mapping[str, Any]) -> PreprocessParams:
        """Rebuild from :meth:`to_metadata` output; missing keys take the defaults."""
        default = cls()
        lo, hi = d.get("window_percentiles", default.window_percentiles)
        return cls(
            input_size=int(d.get("input_size", default.input_size)),
            mean=float(d.get("mean", default.mean)),
            std=float(d.get("std", default.std)),
            window_percentiles=(float(lo), float(hi)),
        )
