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


def is_assessable(score: float, threshold: float) -> bool:
    """Whether an OOD ``score`` lets the model answer (a NaN or infinite score never does)."""
    return bool(np.isfinite(score)) and score <= threshold


@dataclass(frozen=True, eq=False)
class ImagingOutput:
    """Scores of one image.

    Attributes:
        logits: ``[K]`` raw logits in label order.
        probabilities: ``[K]`` calibrated probabilities.
        positive: ``[K]`` probability at or above the finding's operating threshold, and the image
            assessable; all False for an image the model does not know.
        cam: ``[K, h, w]`` class activation maps in logit units (bias excluded).
        ood_score: the model's out-of-distribution score of the image (the graph's ``ood`` output).
        model: the served model (version, session, metadata) that produced these scores.
    """

    logits: np.ndarray
    probabilities: np.ndarray
    positive: np.ndarray
    cam: np.ndarray
    ood_score: float
    model: ServedModel

    @property
    def ood_threshold(self) -> float:
        """The score above which the model's answer is not given (from the model's metadata)."""
        return self.model.imaging_meta.ood.threshold

    @property
    def assessable(self) -> bool:
        """The image is within what the model knows: a finite OOD score at or under the threshold."""
        return is_assessable(self.ood_score, self.ood_threshold)

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
