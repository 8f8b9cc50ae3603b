"""The evaluation metrics against hand-computed values and naive references."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import (
    auroc,
    binary_report,
    bootstrap_auroc_ci,
    expected_calibration_error,
    fit_temperature,
    pointing_game,
    sigmoid,
    threshold_for_sensitivity,
)


def _pairwise_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def test_auroc_counts_ties_as_one_half() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.5, 0.5, 0.8, 0.2, 0.3])
    assert auroc(y, s) == pytest.approx(6.5 / 9)


def test_auroc_matches_the_pairwise_definition_on_random_tied_scores() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(int)
    s = np.round(rng.random(400) + 0.3 * y, 1)
    assert auroc(y, s) == pytest.approx(_pairwise_auroc(y, s), abs=1e-12)


def test_auroc_is_nan_without_both_classes() -> None:
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_bootstrap_ci_matches_a_naive_resampling_loop() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.25).astype(int)
    s = np.round(rng.random(200) + 0.4 * y, 1)
    naive_rng = np.random.default_rng(9)
    values = []
    for _ in range(80):
        idx = naive_rng.integers(0, y.size, y.size)
        if 0 < y[idx].sum() < y.size:
            values.append(_pairwise_auroc(y[idx], s[idx]))
    expected = tuple(np.quantile(values, [0.025, 0.975]))
    assert bootstrap_auroc_ci(y, s, n_boot=80, seed=9) == pytest.approx(expected, abs=1e-12)


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    y = (rng.random(true_logits.size) < sigmoid(true_logits)).astype(int)
    # an over-confident model: logits three times too large
    assert fit_temperature(3 * true_logits, y) == pytest.approx(3.0, rel=0.08)


def test_ece_is_zero_for_perfect_calibration_and_large_for_overconfidence() -> None:
    p = np.repeat([0.1, 0.9], 1000)
    y = np.concatenate([np.r_[np.ones(100), np.zeros(900)], np.r_[np.ones(900), np.zeros(100)]])
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(y, np.where(p > 0.5, 1.0, 0.0)) == pytest.approx(0.1)


def test_threshold_reaches_the_target_sensitivity() -> None:
    y = np.array([1] * 10 + [0] * 10)
    p = np.r_[np.linspace(0.5, 0.95, 10), np.linspace(0.0, 0.6, 10)]
    t = threshold_for_sensitivity(y, p, 0.8)
    assert (p[y == 1] >= t).mean() >= 0.8
    report = binary_report(y, p, t, n_boot=50)
    assert report.sensitivity >= 0.8 and 0 <= report.specificity <= 1


def test_pointing_game_hits_only_when_the_maximum_is_inside_the_mask() -> None:
    cams = np.zeros((2, 8, 8))
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:4, 2:4] = True
    cams[0, 3, 3] = 1.0  # inside
    cams[1, 6, 6] = 1.0  # outside
    assert pointing_game(cams, masks) == pytest.approx(0.5)


def test_free_sensitivity_lowers_the_threshold_into_the_gap_without_losing_specificity() -> None:
    # perfectly separated: 85% sensitivity would sit on a positive's score and miss 3 of 20
    y = np.array([1] * 20 + [0] * 20)
    p = np.r_[np.linspace(0.6, 0.99, 20), np.linspace(0.01, 0.3, 20)]
    strict = threshold_for_sensitivity(y, p, 0.85)
    free = threshold_for_sensitivity(y, p, 0.85, free_sensitivity=True)
    assert (p[y == 1] >= strict).mean() < 1.0
    assert 0.3 < free < 0.6 and (p[y == 1] >= free).all() and (p[y == 0] < free).all()
    # overlapping classes: never lets one more validation negative through
    q = np.r_[np.linspace(0.2, 0.9, 20), np.linspace(0.1, 0.7, 20)]
    t0 = threshold_for_sensitivity(y, q, 0.85)
    t1 = threshold_for_sensitivity(y, q, 0.85, free_sensitivity=True)
    assert t1 <= t0
    assert (q[y == 0] >= t1).sum() == (q[y == 0] >= t0).sum()
    assert (q[y == 1] >= t1).mean() >= 0.85
