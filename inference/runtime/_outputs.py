"""What the runtime returns: raw model outputs with calibrated probabilities, and the model that made them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from inference.runtime._served import ServedModel


def calibrated_probability(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit / T)`` computed without overflow for large negative logits."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True, eq=False)
class ImagingOutput:
    """Scores of one image.

    Attributes:
        logits: ``[K]`` raw logits in label order.
        probabilities: ``[K]`` calibrated probabilities.
        positive: ``[K]`` probability at or above the finding's operating threshold.
        cam: ``[K, h, w]`` class activation maps in logit units (bias excluded).
        model: the served model (version, session, metadata) that produced these scores.
    """

    logits: np.ndarray
    probabilities: np.ndarray
    positive: np.ndarray
    cam: np.ndarray
    model: ServedModel

    @property
    def labels(self) -> tuple[str, ...]:
        """Finding codes in output order."""
        return self.model.imaging_meta.labels

    @property
    def findings(self) -> list[tuple[str, float, bool]]:
        """``(code, probability, positive)`` per finding, in label order."""
        return [
            (code, float(p), bool(pos))
            for code, p, pos in zip(self.labels, self.probabilities, self.positive, strict=True)
        ]


@dataclass(frozen=True, eq=False)
class TriageOutput:
    """Score of one set of vital signs.

    Attributes:
        logit: raw logit, equal to ``intercept + sum(contributions)``.
        probability: calibrated probability of deterioration.
        positive: probability at or above the model's operating threshold.
        contributions: feature → contribution to the logit (0 for a missing feature in an additive model).
        intercept: the model's intercept.
        model: the served model that produced the score.
    """

    logit: float
    probability: float
    positive: bool
    contributions: Mapping[str, float]
    intercept: float
    model: ServedModel
