"""``AdditiveTriage``: a neural additive model of deterioration risk from vital signs.

One small subnetwork per vital sign maps its raw value to a contribution in logit units, and the
logit is the intercept plus the sum of the contributions (Agarwal et al., 2021, "Neural Additive
Models"). The sum is computed in the graph, so the contributions the server shows add up to the
score it acts on, in PyTorch and in the exported ONNX alike.

Two properties are built into the architecture rather than hoped for from training:

- **A sign not measured contributes exactly 0.** Every sign has a clinical reference value (the middle
  of its NEWS2 zero-scoring range, :data:`REFERENCE`) whose contribution is 0 by construction; a missing
  sign is read as that value and its contribution is additionally multiplied by ``present``. The
  intercept is therefore the logit of a patient whose every sign is normal or unmeasured. Training
  drops measured signs at random (see ``training.loops``), so the risk stays calibrated when a sign is
  missing instead of the model learning "missing" as a signal.
- **Moving further from normal never lowers the risk.** A continuous sign's contribution is
  ``h_up(relu(x - ref) / s) + h_down(relu(ref - x) / s)`` where each ``h`` is a sum of increasing
  saturating units with non-negative weights and ``h(0) = 0``: monotone non-decreasing on each side of
  the reference, as NEWS2 is. ``on_oxygen`` has 0 on air and a non-negative value on oxygen;
  ``consciousness`` is non-decreasing along A, C, V, P, U.

Inputs are raw values in contract units (see :data:`inference.triage.FEATURES`); standardisation
constants are buffers inside the graph, so callers never standardise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F  # noqa: N812  (the usual torch alias)

from inference.triage import FEATURES, NORMAL_RANGES, REFERENCE

CATEGORICAL_LEVELS: dict[str, int] = {"on_oxygen": 2, "consciousness": 5}
"""Categorical features and their number of levels (codes 0..K-1 as encoded by ``encode_features``)."""


class _MonotoneSide(nn.Module):
    """``h(d) = sum_k softplus(a_k) * (tanh(softplus(w_k) * d + b_k) - tanh(b_k))``: h(0) = 0, h' >= 0."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        # Slopes from gentle to steep and thresholds spread over 0-3 standard deviations from normal, so
        # both a smooth rise and a NEWS2-like step are reachable from the start.
        self.w = nn.Parameter(torch.linspace(-1.0, 2.5, hidden))
        self.b = nn.Parameter(torch.linspace(-4.0, 0.5, hidden))
        self.a = nn.Parameter(torch.full((hidden,), -3.0))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        units = torch.tanh(F.softplus(self.w) * d.unsqueeze(1) + self.b) - torch.tanh(self.b)
        return (units * F.softplus(self.a)).sum(dim=1)


class _FeatureNet(nn.Module):
    """A continuous sign: monotone non-decreasing in the distance from the reference on each side."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.up = _MonotoneSide(hidden)
        self.down = _MonotoneSide(hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z is the standardised distance from the reference: positive above it, negative below.
        return self.up(torch.relu(z)) + self.down(torch.relu(-z))


class _FeatureTable(nn.Module):
    """A categorical sign: 0 for level 0, then non-decreasing steps (softplus keeps each step >= 0)."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.steps = nn.Parameter(torch.full((levels - 1,), -2.0))

    @property
    def table(self) -> torch.Tensor:
        """Contribution per level, level 0 first."""
        return torch.cat([torch.zeros(1, dtype=self.steps.dtype), torch.cumsum(F.softplus(self.steps), 0)])

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        # Codes arrive as float; rounding and clamping keep an odd value from indexing out of range.
        index = torch.clamp(torch.round(code), 0, self.levels - 1).to(torch.int64)
        return self.table[index]


class AdditiveTriage(nn.Module):
    """Additive, missing-aware, plausibility-constrained risk model over :data:`inference.triage.FEATURES`.

    Args:
        std: Training standard deviation per continuous feature (raw units), the scale of the distance
            from the reference; stored as a buffer.
        reference: Starting normal point per feature (default :data:`REFERENCE`); a continuous one is
            learned inside :data:`~inference.triage.NORMAL_RANGES`.
        features: Feature names in input order (default: ``FEATURES``).
        hidden: Units per side of each continuous feature's function.

    :meth:`forward` takes ``values [N, F]`` (raw, any value where missing) and ``present [N, F]`` (1 where
    measured) and returns ``(logit [N], contributions [N, F])`` with
    ``contributions[:, i] = present_i * f_i(value_i)``, ``f_i(reference_i) = 0`` and
    ``logit = intercept + contributions.sum(1)``.
    """

    std: torch.Tensor
    ref_low: torch.Tensor
    ref_span: torch.Tensor

    def __init__(
        self,
        *,
        std: Mapping[str, float] | None = None,
        reference: Mapping[str, float] | None = None,
        features: Sequence[str] = FEATURES,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        self.features = tuple(features)
        std = std or {}
        reference = {**REFERENCE, **(reference or {})}
        stds = [max(float(std.get(name, 1.0)), 1e-3) for name in self.features]
        refs = [float(reference[name]) for name in self.features]
        # A continuous sign's normal point is learned inside its clinical normal range
        # (lo + (hi - lo) * sigmoid(raw)); a categorical one stays at code 0 (air, alert).
        lows, spans, raws = [], [], []
        for name, ref in zip(self.features, refs, strict=True):
            lo, hi = NORMAL_RANGES.get(name, (ref, ref))
            frac = min(max((ref - lo) / (hi - lo), 0.02), 0.98) if hi > lo else 0.5
            lows.append(lo)
            spans.append(hi - lo)
            raws.append(float(np.log(frac / (1.0 - frac))))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32))
        self.register_buffer("ref_low", torch.tensor(lows, dtype=torch.float32))
        self.register_buffer("ref_span", torch.tensor(spans, dtype=torch.float32))
        self.ref_raw = nn.Parameter(torch.tensor(raws, dtype=torch.float32))
        self.nets = nn.ModuleList(
            _FeatureTable(CATEGORICAL_LEVELS[name]) if name in CATEGORICAL_LEVELS else _FeatureNet(hidden)
            for name in self.features
        )
        self.intercept = nn.Parameter(torch.zeros(()))

    @property
    def reference(self) -> torch.Tensor:
        """The normal point of each feature, ``[F]`` (raw units; codes for categorical features)."""
        return self.ref_low + self.ref_span * torch.sigmoid(self.ref_raw)

    def reference_values(self) -> dict[str, float]:
        """The normal point of each feature, as exported in ``dxassist.reference``."""
        with torch.no_grad():
            values = self.reference.tolist()
        return {name: float(v) for name, v in zip(self.features, values, strict=True)}

    def shape_functions(self, values: torch.Tensor) -> torch.Tensor:
        """``f_i(value_i)`` for every feature, ``[N, F]``, ignoring whether the value was measured."""
        z = (values - self.reference) / self.std
        columns = []
        for j, (name, net) in enumerate(zip(self.features, self.nets, strict=True)):
            columns.append(net(values[:, j] if name in CATEGORICAL_LEVELS else z[:, j]))
        return torch.stack(columns, dim=1)

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # An unmeasured sign is read as its reference (contribution 0 by construction) and its
        # contribution is multiplied by present = 0 as well, so it is exactly 0 whatever value was sent.
        filled = present * values + (1.0 - present) * self.reference
        contributions = present * self.shape_functions(filled)
        logit = self.intercept + contributions.sum(dim=1)
        return logit, contributions

    @staticmethod
    def standardisation(
        values: NDArray[np.float32], present: NDArray[np.float32], features: Sequence[str] = FEATURES
    ) -> dict[str, float]:
        """Standard deviation of each continuous feature over its measured training values."""
        std: dict[str, float] = {}
        for j, name in enumerate(features):
            if name in CATEGORICAL_LEVELS:
                continue
            measured = values[present[:, j] > 0.5, j].astype(np.float64)
            std[name] = float(measured.std()) if measured.size > 1 else 1.0
        return std
