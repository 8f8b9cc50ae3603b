"""The sentences results carry in ``warnings``: what a reader must know before trusting the output."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from inference import vocabulary

if TYPE_CHECKING:
    from inference.runtime import ServedModel

SYNTHETIC: Final = (
    "This model was trained on synthetic data only; its output has not been validated on real patients "
    "and must not be used for diagnosis."
)


def training(served: ServedModel) -> str:
    """What the model that made a result was trained on (every result carries it): :data:`SYNTHETIC`, or
    the data set its ONNX metadata names (``dxassist.training_data``) for a model trained on real data.

    The second never uses the word "synthetic": outputs and pages take a warning holding it for the
    synthetic one.
    """
    if served.synthetic:
        return SYNTHETIC
    if served.training_data is None:
        return vocabulary.TRAINING_UNKNOWN(model=served.name, version=served.version)
    return vocabulary.TRAINED_ON(
        model=served.name, version=served.version, data=served.training_data.rstrip(".")
    )


NOT_ASSESSABLE_CODE: Final = "not_assessable"
"""Stable prefix of the warning of a result whose image the model refused (clients match on it)."""


def not_assessable(score: float, threshold: float, model: str, version: str) -> str:
    """The image is out of the model's distribution: the result carries no finding and raises no priority."""
    shown = f"{score:.3g}" if math.isfinite(score) else "not finite"
    return (
        f"{NOT_ASSESSABLE_CODE}: the image is outside what model {model} version {version} was trained on "
        f"(out-of-distribution score {shown}, threshold {threshold:.3g}); no finding is reported, no heatmap "
        "is drawn and the AI did not raise the priority. A reader must review the image."
    )


def lateral_set_aside(count: int) -> str:
    """Lateral views are not analysed by the imaging model."""
    return vocabulary.LATERAL_SET_ASIDE[count != 1](count=count)


def not_frontal_set_aside(count: int) -> str:
    """Images tagged frontal that the model refused as out of its distribution, another view analysed."""
    return vocabulary.NOT_FRONTAL_SET_ASIDE[count != 1](count=count)


def other_frontals(count: int) -> str:
    """Only one frontal image is analysed per study."""
    return vocabulary.OTHER_FRONTALS[count != 1](count=count)


def reduced_resolution(reduction: int) -> str:
    """The codec decoded the image at a fraction of its resolution (fast path for large JPEG/JPEG 2000)."""
    return vocabulary.REDUCED_RESOLUTION(reduction=reduction)


def news2_missing(missing: list[str]) -> str:
    """NEWS2 is incomplete: its total is the score of the measured parameters only."""
    return vocabulary.NEWS2_MISSING(fields=", ".join(missing))


def triage_missing(missing: list[str]) -> str:
    """The triage model scored without some inputs."""
    return vocabulary.TRIAGE_MISSING(fields=", ".join(missing))


SPO2_WITHHELD_CODE: Final = "spo2_withheld"
"""Stable prefix of the warning of a triage result whose SpO2 the model was not given (match on it)."""


def spo2_withheld(model: str, version: str) -> str:
    """SpO2 on NEWS2 Scale 2: the triage model, which knows Scale 1 only, estimated the risk without it."""
    return vocabulary.SPO2_WITHHELD(model=model, version=version)


def deteriorating(
    observations: int, hours: float, news2_change: int, risk_change: float, raised: bool
) -> str:
    """The patient's series shows deterioration (docs/api.md, "trend")."""
    return vocabulary.DETERIORATING[raised](
        hours=f"{hours:g}",
        observations=observations,
        news2=f"{news2_change:+d}",
        risk=f"{risk_change * 100:+.1f}",
    )


def outputs_not_built(code: str, *, dead: bool) -> str:
    """The DICOM outputs of the result (SR, heatmap captures) could not be built, so the PACS lacks them."""
    return vocabulary.OUTPUTS_NOT_BUILT[dead](code=code)
