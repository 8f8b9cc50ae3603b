"""The sentences results carry in ``warnings``: what a reader must know before trusting the output."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

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
    label = f"Model {served.name} version {served.version}"
    if served.training_data is None:
        return (
            f"{label} does not say what data it was trained on; ask who registered it before relying on "
            "its output."
        )
    return (
        f"{label} was trained on {served.training_data.rstrip('.')}. Its output holds for patients and "
        "equipment like those of that data; a clinician decides."
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
    views = "view was" if count == 1 else "views were"
    return f"{count} lateral {views} set aside; only the frontal view was analysed."


def not_frontal_set_aside(count: int) -> str:
    """Images tagged frontal that the model refused as out of its distribution, another view analysed."""
    images, were = ("image", "was") if count == 1 else ("images", "were")
    return (
        f"{count} {images} tagged as a frontal view {were} set aside: the model did not recognise "
        f"{'it' if count == 1 else 'them'} as a frontal chest radiograph (a lateral or another projection "
        "tagged PA or AP?); another frontal view of the study was analysed."
    )


def other_frontals(count: int) -> str:
    """Only one frontal image is analysed per study."""
    images = "image was" if count == 1 else "images were"
    return f"{count} other frontal {images} received but not analysed; the PA view is preferred, then AP."


def reduced_resolution(reduction: int) -> str:
    """The codec decoded the image at a fraction of its resolution (fast path for large JPEG/JPEG 2000)."""
    return (
        f"The image was decoded at 1/{reduction} of its resolution for analysis (enough for the model's "
        "input size); heatmap boxes are mapped back to full-resolution pixels."
    )


def news2_missing(missing: list[str]) -> str:
    """NEWS2 is incomplete: its total is the score of the measured parameters only."""
    return (
        f"NEWS2 is incomplete: these parameters are missing: {', '.join(missing)}. The total and band are "
        "those of the measured parameters, a lower bound of the full score."
    )


def triage_missing(missing: list[str]) -> str:
    """The triage model scored without some inputs."""
    return (
        f"The risk was estimated without these measurements: {', '.join(missing)}; they contribute nothing "
        "to the explanation."
    )


SPO2_WITHHELD_CODE: Final = "spo2_withheld"
"""Stable prefix of the warning of a triage result whose SpO2 the model was not given (match on it)."""


def spo2_withheld(model: str, version: str) -> str:
    """SpO2 on NEWS2 Scale 2: the triage model, which knows Scale 1 only, estimated the risk without it."""
    return (
        f"{SPO2_WITHHELD_CODE}: SpO2 was charted on NEWS2 Scale 2 (target 88-92 %); model {model} version "
        f"{version} was not trained with the scale and reads every saturation on Scale 1, so it estimated "
        "the risk without SpO2 (contribution 0, listed in missing). NEWS2 scored SpO2 on Scale 2."
    )


def deteriorating(
    observations: int, hours: float, news2_change: int, risk_change: float, raised: bool
) -> str:
    """The patient's series shows deterioration (docs/api.md, "trend")."""
    sentence = (
        f"Deteriorating over {hours:g} h ({observations} observations): NEWS2 {news2_change:+d}, model risk "
        f"{risk_change * 100:+.1f} points."
    )
    return sentence + (" The priority was raised by the site policy." if raised else "")


def outputs_not_built(code: str, *, dead: bool) -> str:
    """The DICOM outputs of the result (SR, heatmap captures) could not be built, so the PACS lacks them."""
    state = (
        "no more attempts are made until an operator retries them (`dxassist dead-letter retry`)"
        if dead
        else "they are being built again"
    )
    return (
        f"[{code}] The DICOM outputs of this result (report and heatmap captures) could not be built, so "
        f"they have not reached the PACS; {state}."
    )
