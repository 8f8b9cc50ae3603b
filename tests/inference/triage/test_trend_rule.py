"""The deterioration rule of a patient's series (inference.triage.compute_trend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from inference.triage import SeriesPoint, compute_trend

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def _point(
    hours: float, total: int, *, complete: bool = True, p: float = 0.05, positive: bool = False
) -> SeriesPoint:
    return SeriesPoint(T0 + timedelta(hours=hours), total, complete, p, positive)


def test_first_observation_has_no_trend() -> None:
    assert compute_trend(_point(0, 5), []) is None
    # Only earlier observations count: one at the same time or later is not "before".
    assert compute_trend(_point(0, 5), [_point(0, 1), _point(3, 1)]) is None


def test_a_rise_of_two_over_the_lowest_complete_score_is_deterioration() -> None:
    trend = compute_trend(_point(6, 5, p=0.2), [_point(0, 1), _point(2, 3), _point(4, 4)])
    assert trend is not None
    assert (trend.observations, trend.hours, trend.news2_change, trend.deteriorating) == (4, 6.0, 4, True)
    assert trend.risk_change == 0.15
    # A rise of one is not; neither is a fall.
    assert not compute_trend(_point(2, 2), [_point(0, 1)]).deteriorating
    assert not compute_trend(_point(2, 1), [_point(0, 5)]).deteriorating
    # The lowest complete score is the baseline, not the first: 3 -> 1 -> 3 is a rise of 2.
    assert compute_trend(_point(4, 3), [_point(0, 3), _point(2, 1)]).deteriorating


def test_an_incomplete_earlier_score_is_no_baseline_but_an_incomplete_score_now_proves_a_rise() -> None:
    assert not compute_trend(_point(2, 4), [_point(0, 0, complete=False)]).deteriorating
    assert compute_trend(_point(2, 4, complete=False), [_point(0, 1)]).deteriorating


def test_a_risk_crossing_its_threshold_upwards_is_deterioration() -> None:
    assert compute_trend(_point(2, 1, positive=True), [_point(0, 1, positive=False)]).deteriorating
    assert not compute_trend(_point(2, 1, positive=True), [_point(0, 1, positive=True)]).deteriorating
    assert not compute_trend(_point(2, 1, positive=False), [_point(0, 1, positive=True)]).deteriorating


def test_a_reading_sent_twice_counts_once() -> None:
    reading = (("heart_rate", 95.0), ("respiratory_rate", 16.0))
    first = SeriesPoint(T0, 1, True, 0.05, False, "1", reading)
    copy = SeriesPoint(T0, 1, True, 0.05, False, "1", reading)
    other = SeriesPoint(T0, 1, True, 0.05, False, "1", (("heart_rate", 94.0), ("respiratory_rate", 16.0)))
    trend = compute_trend(_point(2, 1), [first, copy])
    assert trend is not None and trend.observations == 2
    trend = compute_trend(_point(2, 1), [first, copy, other])
    assert trend is not None and trend.observations == 3
    # Of copies scored by two model versions, the one of this observation's version makes the risk change.
    older = SeriesPoint(T0, 1, True, 0.90, True, "1", reading)
    newer = SeriesPoint(T0, 1, True, 0.10, False, "2", reading)
    now = SeriesPoint(T0 + timedelta(hours=2), 1, True, 0.30, True, "2")
    trend = compute_trend(now, [older, newer])
    assert trend is not None and trend.observations == 2
    assert trend.risk_change == 0.2 and trend.deteriorating  # crossed its version's threshold upwards
