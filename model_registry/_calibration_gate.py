"""The calibration part of the promotion gate: operating points, calibration, score shift, OOD pass rate.

AUROC alone misses what changes a deployed model's behaviour: a version can rank cases slightly better
while its whole score distribution moves (a reported vendor update moved the median abnormality score
from 0.35 to 0.61), so that the old operating threshold silently changes sensitivity and specificity.
Every figure here is measured on the fixed validation set of the profile, so champion and candidate are
compared on the same images:

- ``val_ece``: expected calibration error of the calibrated probabilities; may not grow by more than
  :data:`ECE_TOLERANCE`.
- ``val_sensitivity_<finding>`` / ``val_specificity_<finding>`` at the candidate's own thresholds; may not
  fall more than :data:`OPERATING_TOLERANCE` below the champion's.
- ``val_score_median_<finding>`` with ``threshold_<finding>``: when the median probability moved by at least
  :data:`SHIFT_TOLERANCE` while the threshold stayed put (moved by under a quarter of the shift) and the
  operating point changed, the thresholds were not recalibrated: refused, with the figures.
- ``ood_test_pass_rate`` (in-distribution images the OOD guard lets through) at least
  :data:`MIN_OOD_PASS_RATE`; ``ood_auroc`` at most :data:`OOD_AUROC_TOLERANCE` below the champion's.
"""

from __future__ import annotations

from collections.abc import Mapping

from model_registry._types import FigureComparison

ECE_TOLERANCE = 0.02
OPERATING_TOLERANCE = 0.05
SHIFT_TOLERANCE = 0.05
MIN_OOD_PASS_RATE = 0.98
OOD_AUROC_TOLERANCE = 0.02

_PREFIXES = ("val_sensitivity_", "val_specificity_", "val_score_median_", "threshold_")
_EXACT = ("val_ece", "ood_test_pass_rate", "ood_auroc")
_SLACK = 1e-9


def is_calibration_figure(key: str) -> bool:
    """Whether ``key`` is one of the figures above (copied onto registered versions as tags)."""
    return key in _EXACT or key.startswith(_PREFIXES)


def _findings(metrics: Mapping[str, float]) -> set[str]:
    return {k.removeprefix("threshold_") for k in metrics if k.startswith("threshold_")}


def calibration_checks(
    candidate: Mapping[str, float], champion: Mapping[str, float], champion_version: str
) -> tuple[list[FigureComparison], list[str]]:
    """Compare the calibration figures; return the comparisons and a sentence per failure.

    A figure the champion lacks is not compared (older versions predate it), except the absolute floor
    on the candidate's OOD pass rate.
    """
    comparisons: list[FigureComparison] = []
    failures: list[str] = []
    of_champion = f"champion version {champion_version}"

    def compare(figure: str, ok: bool, sentence: str) -> None:
        comparisons.append(
            FigureComparison(
                figure=figure,
                candidate=candidate.get(figure),
                champion=champion.get(figure, float("nan")),
                passed=ok,
            )
        )
        if not ok:
            failures.append(sentence)

    if "val_ece" in champion:
        value = candidate.get("val_ece")
        ok = value is not None and value <= champion["val_ece"] + ECE_TOLERANCE + _SLACK
        compare(
            "val_ece",
            ok,
            "val_ece is missing"
            if value is None
            else f"val_ece is {value:.4f} against {champion['val_ece']:.4f} for {of_champion} (calibration "
            f"worse by more than {ECE_TOLERANCE:g})",
        )

    for name in sorted(_findings(champion)):
        for side in ("sensitivity", "specificity"):
            key = f"val_{side}_{name}"
            if key not in champion:
                continue
            value = candidate.get(key)
            ok = value is not None and value >= champion[key] - OPERATING_TOLERANCE - _SLACK
            compare(
                key,
                ok,
                f"{key} is missing"
                if value is None
                else f"{key} at its own threshold is {value:.3f} against {champion[key]:.3f} for "
                f"{of_champion}",
            )
        median_key, threshold_key = f"val_score_median_{name}", f"threshold_{name}"
        if median_key in champion and threshold_key in champion:
            median, threshold = candidate.get(median_key), candidate.get(threshold_key)
            if median is None or threshold is None:
                compare(median_key, False, f"{median_key} or {threshold_key} is missing")
                continue
            shift = median - champion[median_key]
            moved = abs(threshold - champion[threshold_key])
            point_moved = any(
                abs(
                    candidate.get(f"val_{side}_{name}", champion.get(f"val_{side}_{name}", 0.0))
                    - champion.get(f"val_{side}_{name}", 0.0)
                )
                > OPERATING_TOLERANCE  # fmt: skip
                for side in ("sensitivity", "specificity")
            )
            stale = abs(shift) >= SHIFT_TOLERANCE and moved < 0.25 * abs(shift) and point_moved
            nan = float("nan")
            sens = (
                champion.get(f"val_sensitivity_{name}", nan),
                candidate.get(f"val_sensitivity_{name}", nan),
            )
            spec = (
                champion.get(f"val_specificity_{name}", nan),
                candidate.get(f"val_specificity_{name}", nan),
            )
            compare(
                median_key,
                not stale,
                f"the {name} score distribution shifted (median probability {champion[median_key]:.2f} -> "
                f"{median:.2f} on the fixed validation set) while its threshold stayed at {threshold:.3f} "
                f"({of_champion}: {champion[threshold_key]:.3f}): the thresholds were not recalibrated after "
                f"the score shift, so sensitivity went {sens[0]:.3f} -> {sens[1]:.3f} and specificity "
                f"{spec[0]:.3f} -> {spec[1]:.3f}; recalibrate the thresholds on the validation set and "
                "register again",
            )

    pass_rate = candidate.get("ood_test_pass_rate")
    if pass_rate is not None or "ood_test_pass_rate" in champion:
        ok = pass_rate is not None and pass_rate >= MIN_OOD_PASS_RATE - _SLACK
        compare(
            "ood_test_pass_rate",
            ok,
            "ood_test_pass_rate is missing (the version has no OOD guard figures)"
            if pass_rate is None
            else f"its OOD guard lets only {pass_rate:.3f} of in-distribution test images through (at least "
            f"{MIN_OOD_PASS_RATE:g} required)",
        )
    if "ood_auroc" in champion:
        value = candidate.get("ood_auroc")
        ok = value is not None and value >= champion["ood_auroc"] - OOD_AUROC_TOLERANCE - _SLACK
        compare(
            "ood_auroc",
            ok,
            "ood_auroc is missing"
            if value is None
            else f"ood_auroc is {value:.4f} against {champion['ood_auroc']:.4f} for {of_champion}",
        )
    return comparisons, failures
