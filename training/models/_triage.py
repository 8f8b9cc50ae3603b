"""``AdditiveTriage``: a neural additive model of deterioration risk from vital signs.

One small subnetwork per vital sign maps its raw value to a contribution in logit units, and the
logit is the intercept plus the sum of the contributions (Agarwal et al., 2021, "Neural Additive
Models"). The sum is computed in the graph, so the contributions the server shows add up to the
score it acts on, in PyTorch and in the exported ONNX alike. Each feature has a learned contribution
for "not measured", so a missing value neither breaks the model nor pretends to be zero.

Inputs are raw values in contract units (see :data:`inference.triage.FEATURES`); standardisation
constants are buffers inside the graph, so callers never standardise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from inference.triage import FEATURES

CATEGORICAL_LEVELS: dict[str, int] = {"on_oxygen": 2, "consciousness": 5}
"""Categorical features and their number of levels (codes 0..K-1 as encoded by ``encode_features``)."""


class _FeatureNet(nn.Module):
    """1 → hidden → hidden → 1 multilayer perceptron on a standardised scalar."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        # tanh keeps each shape smooth and flat beyond the training range, where data are thin.
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )

    @property
    def out_bias(self) -> torch.Tensor:
        last = self.net[-1]
        assert isinstance(last, nn.Linear) and last.bias is not None
        return last.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.unsqueeze(1)).squeeze(1)


class _FeatureTable(nn.Module):
    """A learned contribution per level of a categorical feature."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.table = nn.Parameter(torch.zeros(levels))

    @property
    def out_bias(self) -> torch.Tensor:
        return self.table

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        # Codes arrive as float; rounding and clamping keep an odd value from indexing out of range.
        index = torch.clamp(torch.round(code), 0, self.levels - 1).to(torch.int64)
        return self.table[index]


class AdditiveTriage(nn.Module):
    """Additive, missing-aware risk model over :data:`inference.triage.FEATURES`.

    Args:
        features: Feature names in input order (default: ``FEATURES``).
        mean: Training mean per continuous feature (raw units), stored as a buffer.
        std: Training standard deviation per continuous feature, stored as a buffer.
        hidden: Width of each feature's subnetwork.

    :meth:`forward` takes ``values [N, F]`` (raw, 0 where missing) and ``present [N, F]`` (1 where
    measured) and returns ``(logit [N], contributions [N, F])`` with
    ``contributions[:, i] = present_i * f_i(value_i) + (1 - present_i) * m_i`` and
    ``logit = intercept + contributions.sum(1)``.
    """

    def __init__(
        self,
        *,
        mean: Mapping[str, float] | None = None,
        std: Mapping[str, float] | None = None,
        features: Sequence[str] = FEATURES,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        self.features = tuple(features)
        mean = mean or {}
        std = std or {}
        means = [float(mean.get(name, 0.0)) for name in self.features]
        stds = [max(float(std.get(name, 1.0)), 1e-3) for name in self.features]
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32))
        self.nets = nn.ModuleList(
            _FeatureTable(CATEGORICAL_LEVELS[name]) if name in CATEGORICAL_LEVELS else _FeatureNet(hidden)
            for name in self.features
        )
        self.missing = nn.Parameter(torch.zeros(len(self.features)))
        self.intercept = nn.Parameter(torch.zeros(()))

    def shape_functions(self, values: torch.Tensor) -> torch.Tensor:
        """``f_i(value_i)`` for every feature, ``[N, F]``, ignoring whether the value was measured."""
        z = (values - self.mean) / self.std
        columns = []
        for j, (name, net) in enumerate(zip(self.features, self.nets, strict=True)):
            columns.append(net(values[:, j] if name in CATEGORICAL_LEVELS else z[:, j]))
        return torch.stack(columns, dim=1)

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shapes = self.shape_functions(values)
        contributions = present * shapes + (1.0 - present) * self.missing
        logit = self.intercept + contributions.sum(dim=1)
        return logit, contributions

    @torch.no_grad()
    def centre_(self, values: torch.Tensor, present: torch.Tensor) -> dict[str, float]:
        """Centre every shape function on the measured training values, keeping every logit unchanged.

        Afterwards a contribution reads as "how much this value moves the logit compared with the
        average measured patient"; the offsets move into the intercept and the missing contributions
        shift by the same amount, so no prediction changes.

        Returns:
            The offset removed from each feature.
        """
        shapes = self.shape_functions(values)
        offsets: dict[str, float] = {}
        for j, (name, net) in enumerate(zip(self.features, self.nets, strict=True)):
            measured = present[:, j] > 0.5
            offset = float(shapes[measured, j].mean()) if bool(measured.any()) else 0.0
            net.out_bias.sub_(offset)
            self.missing[j] -= offset
            self.intercept.add_(offset)
            offsets[name] = offset
        return offsets

    @staticmethod
    def standardisation(
        values: NDArray[np.float32], present: NDArray[np.float32], features: Sequence[str] = FEATURES
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Mean and standard deviation of each continuous feature over its measured training values."""
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        for j, name in enumerate(features):
            if name in CATEGORICAL_LEVELS:
                continue
            measured = values[present[:, j] > 0.5, j].astype(np.float64)
            mean[name] = float(measured.mean()) if measured.size else 0.0
            std[name] = float(measured.std()) if measured.size > 1 else 1.0
        return mean, std
