"""Clinical plausibility of a triage model's per-sign functions, checked on the exported ONNX file.

A sign that moves further from its normal point must never lower the risk (as on the NEWS2 chart).
The check feeds the exported graph, not the PyTorch module, one sign at a time over its whole accepted
range (``inference.triage.PLAUSIBLE_RANGES``) with every other sign unmeasured, and measures the largest
drop of the contribution when stepping away from the reference. The figure is logged with the run and
the promotion gate (``model_registry``) refuses a version where it exceeds the tolerance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.triage import PLAUSIBLE_RANGES

#: Largest drop (logit units) tolerated between two grid points: float32 rounding, not a shape.
MONOTONICITY_TOLERANCE = 1e-5

_CATEGORICAL_CODES = {"on_oxygen": (0.0, 1.0), "consciousness": (0.0, 1.0, 2.0, 3.0, 4.0)}


@dataclass(frozen=True)
class ShapeCheck:
    """Result of :func:`check_shapes`.

    Attributes:
        violation: Largest drop of any sign's contribution when moving away from its reference (>= 0).
        per_feature: The same per sign.
        grids: Per sign, ``(values, contributions)`` over the grid, for plots and reports.
        missing_contribution: Largest absolute contribution of an unmeasured sign (must be 0).
    """

    violation: float
    per_feature: dict[str, float]
    grids: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    missing_contribution: float

    @property
    def passed(self) -> bool:
        """Every sign monotone on each side of its reference and every unmeasured sign at exactly 0."""
        return self.violation <= MONOTONICITY_TOLERANCE and self.missing_contribution == 0.0


def _away_drop(grid: np.ndarray, contribution: np.ndarray, reference: float) -> float:
    """Largest decrease of ``contribution`` when stepping away from ``reference`` along ``grid``."""
    above = grid >= reference
    below = grid <= reference
    drops = [0.0]
    if above.sum() > 1:
        drops.append(float(np.max(-np.diff(contribution[above]))))
    if below.sum() > 1:
        # Walking down from the reference: the contribution read backwards must not decrease.
        drops.append(float(np.max(-np.diff(contribution[below][::-1]))))
    return max(0.0, *drops)


def check_shapes(onnx_path: Path, *, points: int = 401) -> ShapeCheck:
    """Run the exported triage model over each sign's accepted range and measure monotonicity.

    Args:
        onnx_path: A ``vitals-triage`` ONNX file with ``dxassist.features`` and ``dxassist.reference``.
        points: Grid points per continuous sign.

    Raises:
        ValueError: The file lacks the reference metadata.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "dxassist.reference" not in meta:
        raise ValueError(f"{onnx_path} has no dxassist.reference metadata; it predates the shape contract.")
    features: list[str] = json.loads(meta["dxassist.features"])
    reference: dict[str, float] = json.loads(meta["dxassist.reference"])
    f = len(features)

    empty_values = np.array([[reference[name] + 7.0 for name in features]], dtype=np.float32)
    _, missing = session.run(
        ["logit", "contributions"], {"values": empty_values, "present": np.zeros((1, f), np.float32)}
    )
    per_feature: dict[str, float] = {}
    grids: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for j, name in enumerate(features):
        if name in _CATEGORICAL_CODES:
            grid = np.array(_CATEGORICAL_CODES[name], dtype=np.float32)
        else:
            lo, hi, _unit = PLAUSIBLE_RANGES[name]
            grid = np.union1d(np.linspace(lo, hi, points), [reference[name]]).astype(np.float32)
        values = np.tile(np.array([reference[n] for n in features], dtype=np.float32), (grid.size, 1))
        values[:, j] = grid
        present = np.zeros_like(values)
        present[:, j] = 1.0
        _, contributions = session.run(["logit", "contributions"], {"values": values, "present": present})
        column = contributions[:, j].astype(np.float64)
        per_feature[name] = _away_drop(grid.astype(np.float64), column, float(reference[name]))
        grids[name] = (grid, column)
    return ShapeCheck(
        violation=max(per_feature.values(), default=0.0),
        per_feature=per_feature,
        grids=grids,
        missing_contribution=float(np.max(np.abs(missing))),
    )
