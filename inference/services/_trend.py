"""The trend of a new triage observation over the patient's earlier ones (site policy window)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from inference.services._context import Context
from inference.triage import News2, SeriesPoint, Trend, compute_trend


def trend_window(ctx: Context, observed_at: datetime) -> tuple[datetime, datetime]:
    """``(since, until)``: the earlier observations that count for the trend of one made at ``observed_at``.

    The window (``triage.trend_window_hours``) comes from the site policy. Only observations strictly
    before ``observed_at`` count, so a late-filed observation is compared with what preceded it clinically.
    The record reads them (``Results.triage_intake``) in the transaction that checks the patient's
    consent, with the sender's scope: another facility's vital signs never shape a trend it is not
    allowed to see.
    """
    return observed_at - timedelta(hours=ctx.policy.trend_window_hours), observed_at


def series_trend(
    ctx: Context,
    *,
    earlier_rows: Sequence[Mapping[str, Any]],
    observed_at: datetime,
    news2: News2,
    probability: float,
    positive: bool,
    model_version: str | None = None,
) -> Trend | None:
    """The trend of this observation over ``earlier_rows`` (the record's series in :func:`trend_window`);
    ``None`` when it is the patient's first in the window.

    The NEWS2 rise that counts as deterioration (``triage.trend_news2_rise``) comes from the site policy.
    ``model_version`` is the triage model version that scored this observation: the model's part of the
    trend compares only observations that version scored.
    """
    earlier = [SeriesPoint(**row) for row in earlier_rows]
    now = SeriesPoint(
        observed_at=observed_at,
        news2_total=news2.total,
        news2_complete=news2.complete,
        probability=probability,
        positive=positive,
        model_version=model_version,
    )
    return compute_trend(now, earlier, news2_rise=ctx.policy.trend_news2_rise)
