"""The champion/challenger comparison's figures on hand-made pairs with known answers."""

from __future__ import annotations

import pytest

from inference.record import ShadowPair, ShadowScores
from inference.services._comparison import compare_pairs, wilson


def _pair(
    i: int, champion: bool, challenger: bool, p1: float, p2: float, truth: bool | None = None
) -> ShadowPair:
    def scores(version: str, positive: bool, p: float) -> ShadowScores:
        return ShadowScores(version, {"nodule": p}, {"nodule": positive}, {"nodule": 0.5})

    return ShadowPair(
        result_id=str(i),
        champion=scores("1", champion, p1),
        challenger=scores("2", challenger, p2),
        truth={} if truth is None else {"nodule": truth},
    )


def test_agreement_kappa_and_difference_match_the_textbook_values() -> None:
    # a=20 both positive, b=5 champion only, c=10 challenger only, d=15 both negative
    cells = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    pairs = [_pair(i, x, y, 0.6, 0.4) for i, (x, y) in enumerate(cells)]
    [f] = compare_pairs(pairs, model="cxr-findings", champion="1", challenger="2").findings
    assert (f.both_positive, f.champion_only, f.challenger_only, f.both_negative) == (20, 5, 10, 15)
    assert f.kappa == pytest.approx(0.4)  # po 0.7, pe 0.5
    assert f.positive_agreement == pytest.approx(40 / 55)
    assert f.negative_agreement == pytest.approx(30 / 45)
    assert f.mean_abs_difference == pytest.approx(0.2)


def test_kappa_is_undefined_when_both_call_everything_negative_and_psi_is_zero_for_equal_scores() -> None:
    pairs = [_pair(i, False, False, 0.1 * (i % 5), 0.1 * (i % 5)) for i in range(50)]
    [f] = compare_pairs(pairs, model="m", champion="1", challenger="2").findings
    assert f.kappa is None and f.positive_agreement is None and f.negative_agreement == 1.0
    assert f.psi == pytest.approx(0.0, abs=1e-9)
    shifted = [_pair(i, False, False, 0.1 * (i % 5), 0.9) for i in range(50)]
    [g] = compare_pairs(shifted, model="m", champion="1", challenger="2").findings
    assert g.psi > 0.25  # every challenger score in the champion's top bin: a significant shift


def test_reader_sensitivity_and_specificity_with_wilson_intervals() -> None:
    # 10 reader-positive inputs: champion finds 8, challenger 10; 5 reader-negative: both say negative
    pairs = [_pair(i, i < 8, True, 0.7, 0.8, truth=True) for i in range(10)]
    pairs += [_pair(10 + i, False, False, 0.2, 0.2, truth=False) for i in range(5)]
    pairs.append(_pair(99, True, True, 0.9, 0.9))  # no verdict: not counted against the readers
    c = compare_pairs(pairs, model="m", champion="1", challenger="2")
    [r] = c.readers
    assert c.reader_verdicts == 15 and r.verdicts == 15
    assert (r.champion_sensitivity.successes, r.champion_sensitivity.total) == (8, 10)
    assert r.challenger_sensitivity.value == 1.0 and r.champion_specificity.value == 1.0
    low, high = r.champion_sensitivity.interval or (0.0, 0.0)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)  # Wilson 95% of 8/10
    assert wilson(0, 0) is None
