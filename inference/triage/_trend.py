"""A patient's series of vital-sign observations: the trend a ward reads beside one result.

On a ward the warning sign is often the trend (a score rising over hours) rather than one reading
(RCP 2017, NEWS2 report, "the trend in the score" and the escalation of monitoring frequency). The
trend of an observation summarises the patient's earlier observations in a window (default 24 h)
ending at this one.

Rule for ``deteriorating`` (documented in ``docs/api.md``): true when

- NEWS2 now is at least ``news2_rise`` (default 2) above the lowest **complete** NEWS2 earlier in the
  window (an incomplete earlier score is only a lower bound, so it cannot show a rise; the score now may
  be incomplete, its known part already proves the rise), or
- the model's risk crossed its threshold upwards: positive now, and some earlier observation in the
  window **scored by the same model version** was below the threshold.

The model's part of the trend (the crossing and ``risk_change``) compares only observations scored by the
version that scores this one: after a promotion, another version's probabilities and threshold say
nothing about a change in the patient (a lower threshold would make every steady patient "cross").

One reading counts once: the same values at the same time (a bedside monitor's gateway and a nurse's app
both sending the observation) are one observation of the patient, not two, so they neither add to
``observations`` nor make a steady patient look more often measured. Of such copies the one scored by
this observation's model version is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

Reading = tuple[tuple[str, float | int | bool | str], ...]
"""The measured values of an observation, ``(name, value)`` per measured sign in a fixed order."""


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One triage observation of a patient, as the trend needs it.

    Attributes:
        observed_at: When measured (time zone aware).
        news2_total: NEWS2 total (the known part when incomplete).
        news2_complete: Every NEWS2 sign was measured.
        probability: The model's calibrated risk.
        positive: The risk is at or above the model's threshold.
        model_version: The triage model version that scored it (None: unknown, compared with any).
        vitals: Its measured values; another point at the same time with the same values is the same
            reading sent twice (None: unknown, never taken for a copy).
    """

    observed_at: datetime
    news2_total: int
    news2_complete: bool
    probability: float
    positive: bool
    model_version: str | None = None
    vitals: Reading | None = None


@dataclass(frozen=True, slots=True)
class Trend:
    """The trend of one observation over the earlier ones in the window.

    Attributes:
        observations: Observations in the window, this one included (at least 2).
        hours: Hours from the earliest observation in the window to this one.
        news2_change: NEWS2 total now minus the earliest one in the window.
        risk_change: Model probability now minus the earliest one in the window scored by the same model
            version (0 when none was).
        deteriorating: By the rule in the module docstring.
    """

    observations: int
    hours: float
    news2_change: int
    risk_change: float
    deteriorating: bool

    def as_dict(self) -> dict[str, object]:
        """The JSON form of the contract."""
        return {
            "observations": self.observations,
            "hours": self.hours,
            "news2_change": self.news2_change,
            "risk_change": self.risk_change,
            "deteriorating": self.deteriorating,
        }


def compute_trend(now: SeriesPoint, earlier: Sequence[SeriesPoint], *, news2_rise: int = 2) -> Trend | None:
    """The trend of ``now`` over ``earlier`` (the patient's observations in the window before it).

    Args:
        now: This observation.
        earlier: Earlier observations of the same patient inside the window, in any order; observations
            at or after ``now.observed_at`` are ignored, copies of one reading count once.
        news2_rise: The NEWS2 rise that counts as deterioration.

    Returns:
        ``None`` when there is no earlier observation in the window (a first observation).
    """
    before = sorted(
        _readings([p for p in earlier if p.observed_at < now.observed_at], now),
        key=lambda p: p.observed_at,
    )
    if not before:
        return None
    first = before[0]
    complete = [p.news2_total for p in before if p.news2_complete]
    risen = bool(complete) and now.news2_total - min(complete) >= news2_rise
    same_model = [p for p in before if _same_version(p, now)]
    crossed = now.positive and any(not p.positive for p in same_model)
    return Trend(
        observations=len(before) + 1,
        hours=round((now.observed_at - first.observed_at).total_seconds() / 3600.0, 2),
        news2_change=now.news2_total - first.news2_total,
        risk_change=round(now.probability - same_model[0].probability, 4) if same_model else 0.0,
        deteriorating=risen or crossed,
    )


def _readings(points: Sequence[SeriesPoint], now: SeriesPoint) -> list[SeriesPoint]:
    """``points`` with each reading once: of copies (same time, same values) the first scored by
    ``now``'s model version, else the first."""
    kept: dict[object, SeriesPoint] = {}
    for i, point in enumerate(points):
        key: object = i if point.vitals is None else (point.observed_at, point.vitals)
        first = kept.get(key)
        if first is None or (not _same_version(first, now) and _same_version(point, now)):
            kept[key] = point
    return list(kept.values())


def _same_version(earlier: SeriesPoint, now: SeriesPoint) -> bool:
    return (
        earlier.model_version is None
        or now.model_version is None
        or earlier.model_version == now.model_version
    )
