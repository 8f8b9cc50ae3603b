"""The promotion gate: may ``champion`` move to a candidate version?

Pure functions over :class:`RegisteredVersion` values, so the rule reads in one place and is tested
without a registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial

from model_registry._calibration_gate import (
    calibration_checks,
    is_calibration_figure,
    ood_pass_rate_check,
)
from model_registry._types import FigureComparison, GateDecision, RegisteredVersion

#: Largest drop of any validation AUROC figure allowed when replacing the champion.
DEFAULT_TOLERANCE = 0.01

#: The plausibility figure of a triage model: the largest drop (logit units) of a sign's contribution
#: when that sign moves further from its normal point, measured on the exported ONNX by the training
#: pipeline. Moving away from normal must never lower the risk.
MONOTONICITY_FIGURE = "shape_monotonicity_violation"
#: Largest such drop tolerated (float32 rounding, not a shape).
MONOTONICITY_TOLERANCE = 1e-5

# Floats that went through a string tag may differ from the computed value in the last bits; a drop of
# exactly the tolerance is allowed, so compare with a little slack.
_SLACK = 1e-9


def is_auroc_figure(key: str) -> bool:
    """Whether ``key`` is an AUROC figure: ``val_auroc``, ``val_auroc_<finding>`` or ``val_macro_auroc``."""
    if key.endswith(("_ci_low", "_ci_high")):
        return False  # interval bounds describe uncertainty; the gate compares point estimates
    return key == "val_auroc" or key.startswith("val_auroc_") or key == "val_macro_auroc"


def is_gate_figure(key: str) -> bool:
    """Whether ``key`` is a gate figure: an AUROC figure or a calibration figure (``_calibration_gate``)."""
    return is_auroc_figure(key) or is_calibration_figure(key)


def is_gate_tag_figure(key: str) -> bool:
    """Whether ``key`` is copied onto a version as a tag for the gate: an AUROC or the plausibility figure."""
    return is_gate_figure(key) or key == MONOTONICITY_FIGURE


def _plausibility_failure(candidate: RegisteredVersion, champion: RegisteredVersion | None) -> str | None:
    """Why the candidate's per-sign shapes are not acceptable, or ``None`` when they are.

    A candidate carrying the figure must be within the tolerance; a candidate replacing a champion that
    carries it must carry it too (an older export could not prove its shapes are plausible).
    """
    value = candidate.metrics.get(MONOTONICITY_FIGURE)
    if value is None:
        if champion is not None and MONOTONICITY_FIGURE in champion.metrics:
            return (
                f"it has no {MONOTONICITY_FIGURE} figure, so nothing shows that moving a vital sign further "
                "from normal never lowers its risk; retrain it with the current pipeline"
            )
        return None
    if not value <= MONOTONICITY_TOLERANCE:
        return (
            f"a vital sign moving further from normal lowers its risk by up to {value:.3g} logit units "
            f"({MONOTONICITY_FIGURE}; at most {MONOTONICITY_TOLERANCE:g} is accepted), which is not "
            "clinically plausible"
        )
    return None


def _not_numbers(metrics: Mapping[str, float]) -> list[str]:
    """The gate figures of ``metrics`` that are not finite numbers (NaN or infinite), sorted."""
    return sorted(k for k, v in metrics.items() if is_gate_tag_figure(k) and not math.isfinite(v))


def _is(figures: list[str]) -> str:
    return "is" if len(figures) == 1 else "are"


def _not_a_number_failure(candidate: RegisteredVersion, champion: RegisteredVersion | None) -> str | None:
    """Why the figures cannot be compared, or ``None`` when every gate figure of both is a number.

    NaN fails every comparison and passes every negated one: a NaN validation median or threshold made
    the score-shift check see no shift, and a NaN elsewhere was refused as "nan against 0.0300". A figure
    that is not a number was not measured (an AUROC with one class absent, say): refused by name.
    """
    ours = _not_numbers(candidate.metrics)
    if ours:
        return (
            f"{', '.join(ours)} {_is(ours)} not a number (NaN or infinite), so the "
            "gate cannot compare it with anything; measure the version's validation figures again (evaluate "
            "and register it again) before promoting it"
        )
    theirs = _not_numbers(champion.metrics) if champion is not None else []
    if champion is not None and theirs:
        return (
            f"{', '.join(theirs)} of champion version {champion.version} {_is(theirs)} "
            "not a number (NaN or infinite), so the candidate cannot be compared with it; correct or remove "
            f"that tag of version {champion.version} in the registry, then promote again"
        )
    return None


def evaluate_gate(
    candidate: RegisteredVersion,
    champion: RegisteredVersion | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GateDecision:
    """Decide whether ``candidate`` may replace ``champion``.

    The candidate must have passed the ONNX parity check, carry a sha256 and, when it has per-sign shapes
    (a triage model), keep them plausible (``shape_monotonicity_violation`` within
    ``MONOTONICITY_TOLERANCE``); for every gate figure the
    champion has, the candidate's value must be present and at most ``tolerance`` below the champion's
    (each measured on the version's validation set: the same images when both were trained on the same
    data set; when their content digests (``dataset_sha256``), or without both digests their ``dataset``
    tags, differ the reason says the figures were measured on different sets). A gate figure of either
    version that is not a finite number (NaN) is refused by name, not compared. A first version
    (``champion`` None) is held to the absolute criteria only: parity, sha256, plausible shapes and the
    OOD guard's pass-rate floor (``MIN_OOD_PASS_RATE``).

    Args:
        candidate: The version asked to become champion.
        champion: The current champion, or ``None`` when there is none.
        tolerance: Largest drop allowed on any figure.

    Returns:
        The decision; ``passed`` is False with a full-sentence ``reason`` when refused.
    """
    label = f"Version {candidate.version} of {candidate.name}"
    previous = champion.version if champion is not None else None
    decision = partial(
        GateDecision,
        name=candidate.name,
        version=candidate.version,
        previous_champion=previous,
        tolerance=tolerance,
    )
    if not candidate.parity_passed:
        diff = candidate.tags.get("parity_max_abs_diff", "unknown")
        return decision(
            passed=False,
            reason=(
                f"{label} cannot become champion: its ONNX export did not pass the parity check against "
                f"PyTorch (parity_passed is not true; largest difference {diff}). Only versions whose "
                "parity check passed are accepted."
            ),
        )
    if not candidate.sha256:
        return decision(
            passed=False,
            reason=(
                f"{label} cannot become champion: it has no sha256 tag, so servers could not verify "
                "the model file they download. Register it again with log_and_register."
            ),
        )
    not_a_number = _not_a_number_failure(candidate, champion)
    if not_a_number is not None:
        return decision(passed=False, reason=f"{label} cannot become champion: {not_a_number}.")
    implausible = _plausibility_failure(candidate, champion)
    if implausible is not None:
        return decision(
            passed=False,
            reason=f"{label} cannot become champion: {implausible}.",
        )
    if champion is None:
        # Absolute criteria hold for every candidate; only the relative ones need a champion.
        floor = ood_pass_rate_check(candidate.metrics, {})
        if floor is not None and floor[1] is not None:
            return decision(
                passed=False,
                reason=(
                    f"{label} cannot become the first champion: {floor[1]}. The floor holds for every "
                    "candidate, with or without a champion to compare with."
                ),
                comparisons=(floor[0],),
            )
        return decision(
            passed=True,
            reason=f"{label} becomes the first champion: there is no champion to compare with.",
            comparisons=(floor[0],) if floor is not None else (),
        )

    comparisons: list[FigureComparison] = []
    failures: list[str] = []
    for figure in sorted(k for k in champion.metrics if is_auroc_figure(k)):
        reference = champion.metrics[figure]
        value = candidate.metrics.get(figure)
        passed = value is not None and value >= reference - tolerance - _SLACK
        comparisons.append(
            FigureComparison(figure=figure, candidate=value, champion=reference, passed=passed)
        )
        if value is None:
            failures.append(
                f"{figure} is missing, while champion version {champion.version} has {reference:.4f}"
            )
        elif not passed:
            failures.append(
                f"{figure} is {value:.4f} against {reference:.4f} for champion version {champion.version}, "
                f"a drop of {reference - value:.4f}"
            )
    auroc_failed = bool(failures)
    calibration, calibration_failures, notes = calibration_checks(
        candidate.metrics, champion.metrics, champion.version
    )
    comparisons += calibration
    failures += calibration_failures
    if failures:
        reason = f"{label} was refused by the promotion gate: " + "; ".join(failures) + "."
        if notes:
            reason += " OOD guard: " + "; ".join(notes) + "."
        if auroc_failed:
            reason += (
                f" A candidate may be at most {tolerance:g} below the champion on every validation AUROC."
            )
        return decision(
            passed=False,
            reason=reason + _unlike_sets(candidate, champion),
            comparisons=tuple(comparisons),
        )
    if comparisons:
        aurocs = sum(1 for c in comparisons if is_auroc_figure(c.figure))
        reason = (
            f"{label} passed the promotion gate against champion version {champion.version}: "
            f"{aurocs} validation AUROC figure(s) within {tolerance:g} of the champion or better"
            + (
                f", and {len(calibration)} calibration, operating-point, score-shift and OOD check(s)."
                if calibration
                else "."
            )
        )
    else:
        reason = (
            f"{label} passed the promotion gate: champion version {champion.version} has no validation "
            "AUROC figure to compare with."
        )
    if notes:
        reason += " OOD guard: " + "; ".join(notes) + "."
    return decision(
        passed=True,
        reason=reason + _unlike_sets(candidate, champion),
        comparisons=tuple(comparisons),
    )


def _unlike_sets(candidate: RegisteredVersion, champion: RegisteredVersion) -> str:
    """A sentence when the two versions were trained (hence validated) on different data sets, else ''.

    When both carry a content digest (``dataset_sha256``) the digests decide: the same name may hold
    other images (a later export), and two names may hold the same ones. Otherwise the names decide.
    """
    if candidate.dataset_digest and champion.dataset_digest:
        if candidate.dataset_digest == champion.dataset_digest:
            return ""
        return (
            " Note: the validation figures were measured on different data sets (candidate: "
            f"{candidate.dataset}, content sha256 {candidate.dataset_digest[:12]}...; champion version "
            f"{champion.version}: {champion.dataset}, content sha256 {champion.dataset_digest[:12]}...), "
            "not on the same images."
        )
    if candidate.dataset is None or champion.dataset is None or candidate.dataset == champion.dataset:
        return ""
    return (
        " Note: the validation figures were measured on different data sets (candidate: "
        f"{candidate.dataset}; champion version {champion.version}: {champion.dataset}), not on the same "
        "images."
    )
