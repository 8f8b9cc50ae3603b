"""The calibration part of the promotion gate: operating points, calibration, score shift, OOD pass rate.

AUROC alone misses what changes a deployed model's behaviour: a version can rank cases slightly better
while its whole score distribution moves (a reported vendor update moved the median abnormality score
from 0.35 to 0.61), so that the old operating threshold silently changes sensitivity and specificity.
Every figure here is measured on the version's validation set: the same images for two versions trained
on the same data set (the fixed validation set of a profile), but not for a version retrained on a
hospital's export against a champion trained elsewhere (the gate then says so, ``_gate``):

- ``val_ece``: expected calibration error of the calibrated probabilities; may not grow by more than
  :data:`ECE_TOLERANCE`.
- ``val_sensitivity_<finding>`` / ``val_specificity_<finding>`` at the candidate's own thresholds; may not
  fall more than :data:`OPERATING_TOLERANCE` below the champion's.
- ``val_score_median_<finding>`` with ``threshold_<finding>``: when the median probability moved by at least
  :data:`SHIFT_TOLERANCE` while the threshold stayed put (moved by under a quarter of the shift) and the
  operating point changed, the thresholds were not recalibrated: refused, with the figures.
- ``ood_test_pass_rate`` (in-distribution images the OOD guard lets through) at least
  :data:`MIN_OOD_PASS_RATE`; ``ood_auroc`` at most :data:`OOD_AUROC_TOLERANCE` below the champion's, on
  the refusal-set kinds both versions faced (``ood_auroc_<kind>``; see :func:`ood_auroc`), and each of
  those kinds' ``ood_auroc_<kind>`` at most the same tolerance below the champion's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from model_registry._types import FigureComparison

ECE_TOLERANCE = 0.02
OPERATING_TOLERANCE = 0.05
SHIFT_TOLERANCE = 0.05
MIN_OOD_PASS_RATE = 0.98
OOD_AUROC_TOLERANCE = 0.02

_PREFIXES = ("val_sensitivity_", "val_specificity_", "val_score_median_", "threshold_", "ood_auroc_")
_EXACT = ("val_ece", "ood_test_pass_rate", "ood_auroc")
_SLACK = 1e-9


def is_calibration_figure(key: str) -> bool:
    """Whether ``key`` is one of the figures above (copied onto registered versions as tags)."""
    return key in _EXACT or key.startswith(_PREFIXES)


def _findings(metrics: Mapping[str, float]) -> set[str]:
    return {k.removeprefix("threshold_") for k in metrics if k.startswith("threshold_")}


def calibration_checks(
    candidate: Mapping[str, float], champion: Mapping[str, float], champion_version: str
) -> tuple[list[FigureComparison], list[str], list[str]]:
    """Compare the calibration figures; return the comparisons, a sentence per failure and notes on
    what was compared where the versions' figures are not alike (the OOD refusal set's kinds).

    A figure the champion lacks is not compared (older versions predate it), except the absolute floor
    on the candidate's OOD pass rate.
    """
    comparisons: list[FigureComparison] = []
    failures: list[str] = []
    notes: list[str] = []
    of_champion = f"champion version {champion_version}"

    def compare(
        figure: str,
        ok: bool,
        sentence: str,
        *,
        candidate_value: float | None = None,
        champion_value: float | None = None,
    ) -> None:
        comparisons.append(
            FigureComparison(
                figure=figure,
                candidate=candidate.get(figure) if candidate_value is None else candidate_value,
                champion=champion.get(figure, float("nan")) if champion_value is None else champion_value,
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
                f"{median:.2f} on the validation set) while its threshold stayed at {threshold:.3f} "
                f"({of_champion}: {champion[threshold_key]:.3f}): the thresholds were not recalibrated after "
                f"the score shift, so sensitivity went {sens[0]:.3f} -> {sens[1]:.3f} and specificity "
                f"{spec[0]:.3f} -> {spec[1]:.3f}; recalibrate the thresholds on the validation set and "
                "register again",
            )

    floor = ood_pass_rate_check(candidate, champion)
    if floor is not None:
        comparisons.append(floor[0])
        if floor[1] is not None:
            failures.append(floor[1])
    if "ood_auroc" in champion:
        ood_auroc(candidate, champion, of_champion, compare, failures, notes)
    return comparisons, failures, notes


def ood_pass_rate_check(
    candidate: Mapping[str, float], champion: Mapping[str, float]
) -> tuple[FigureComparison, str | None] | None:
    """The absolute floor on the OOD guard's pass rate: the comparison and, when it fails, why.

    Absolute, so it holds for every candidate, a first champion too (pass ``{}`` as ``champion``): a guard
    that refuses more than 2 % of ordinary films is not acceptable whatever it replaces. ``None`` when
    neither version has the figure (a model without an OOD guard, such as ``vitals-triage``); a candidate
    without it replacing a champion that has it fails.
    """
    pass_rate = candidate.get("ood_test_pass_rate")
    if pass_rate is None and "ood_test_pass_rate" not in champion:
        return None
    ok = pass_rate is not None and pass_rate >= MIN_OOD_PASS_RATE - _SLACK
    comparison = FigureComparison(
        figure="ood_test_pass_rate",
        candidate=pass_rate,
        champion=champion.get("ood_test_pass_rate", float("nan")),
        passed=ok,
    )
    if ok:
        return comparison, None
    return comparison, (
        "ood_test_pass_rate is missing (the version has no OOD guard figures)"
        if pass_rate is None
        else f"its OOD guard lets only {pass_rate:.3f} of in-distribution test images through (at least "
        f"{MIN_OOD_PASS_RATE:g} required)"
    )


def _kind_figures(metrics: Mapping[str, float]) -> dict[str, float]:
    """The per-kind refusal AUROC figures (``ood_auroc_<kind>``), by kind."""
    return {k.removeprefix("ood_auroc_"): v for k, v in metrics.items() if k.startswith("ood_auroc_")}


def ood_auroc(
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    of_champion: str,
    compare: Callable[..., None],
    failures: list[str],
    notes: list[str],
) -> None:
    """Compare the OOD guard's refusal AUROC on the refusal-set kinds both versions faced.

    The refusal set has as many images of every kind and one shared in-distribution test split, so the
    pooled AUROC is the mean of the per-kind figures; the pooled figures of two versions whose refusal
    sets differ (a kind added, e.g. ``lateral``) are not comparable. Then the mean over the kinds both
    faced is compared (``ood_auroc_shared_kinds``); a kind only the candidate faced is reported, not
    compared; a kind the champion faced and the candidate lacks is a missing figure. Every kind both
    faced is also compared on its own (``ood_auroc_<kind>``), with the same tolerance, so a drop on one
    kind cannot hide behind gains on the others in the mean.
    """
    ours, theirs = _kind_figures(candidate), _kind_figures(champion)
    if not theirs or set(ours) == set(theirs):
        value = candidate.get("ood_auroc")
        ok = value is not None and value >= champion["ood_auroc"] - OOD_AUROC_TOLERANCE - _SLACK
        compare(
            "ood_auroc",
            ok,
            "ood_auroc is missing"
            if value is None
            else f"ood_auroc is {value:.4f} against {champion['ood_auroc']:.4f} for {of_champion}",
        )
        if theirs:
            _each_kind(ours, theirs, sorted(theirs), of_champion, compare)
            notes.append(f"ood_auroc compared on the same {len(theirs)} refusal-set kinds, and on each")
        elif ours:
            notes.append(
                f"ood_auroc compared as pooled: {of_champion} records no per-kind figures, so its refusal "
                "set's kinds are not known"
            )
        return
    missing = sorted(set(theirs) - set(ours))
    for kind in missing:
        failures.append(
            f"ood_auroc_{kind} is missing, while {of_champion} has {theirs[kind]:.4f} (the candidate's OOD "
            f"guard was not evaluated on the {kind} images of the refusal set)"
        )
    shared = sorted(set(theirs) & set(ours))
    if shared:
        value = sum(ours[k] for k in shared) / len(shared)
        reference = sum(theirs[k] for k in shared) / len(shared)
        ok = value >= reference - OOD_AUROC_TOLERANCE - _SLACK
        compare(
            "ood_auroc_shared_kinds",
            ok,
            f"ood_auroc on the {len(shared)} refusal-set kinds both versions faced is {value:.4f} against "
            f"{reference:.4f} for {of_champion}",
            candidate_value=value,
            champion_value=reference,
        )
        _each_kind(ours, theirs, shared, of_champion, compare)
        notes.append(
            f"ood_auroc compared on the {len(shared)} refusal-set kinds both versions faced "
            f"({', '.join(shared)}), and on each"
        )
    new = sorted(set(ours) - set(theirs))
    if new:
        notes.append(
            "not compared: "
            + ", ".join(f"{kind} ({ours[kind]:.4f}; {of_champion} never faced it)" for kind in new)
        )


def _each_kind(
    ours: Mapping[str, float],
    theirs: Mapping[str, float],
    kinds: list[str],
    of_champion: str,
    compare: Callable[..., None],
) -> None:
    """Hold each kind both versions faced to the pooled check's tolerance.

    The pooled figure is a mean: a guard that now lets one kind through (limbs, say) can keep it by ranking
    the other kinds a little better. Each kind is a way a wrong image reaches the model, so none may drop.
    """
    for kind in kinds:
        if kind not in ours:
            continue  # reported as missing by the caller
        figure = f"ood_auroc_{kind}"
        value, reference = ours[kind], theirs[kind]
        compare(
            figure,
            value >= reference - OOD_AUROC_TOLERANCE - _SLACK,
            f"{figure} is {value:.4f} against {reference:.4f} for {of_champion} (the OOD guard ranks the "
            f"{kind} images of the refusal set worse by more than {OOD_AUROC_TOLERANCE:g})",
            candidate_value=value,
            champion_value=reference,
        )
