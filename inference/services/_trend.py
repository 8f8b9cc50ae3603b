"""The trend of a new triage observation over the patient's earlier ones (site policy window)."""

from __future__ import annotations

from datetime import datetime, timedelta

from inference.record import PatientIn, Scope
from inference.services._context import Context, db
from inference.triage import News2, SeriesPoint, Trend, compute_trend


async def series_trend(
    ctx: Context,
    *,
    patient: PatientIn,
    observed_at: datetime,
    news2: News2,
    probability: float,
    positive: bool,
    scope: Scope | None = None,
) -> Trend | None:
    """The trend of this observation, ``None`` when it is the patient's first in the window.

    The window (``triage.trend_window_hours``) and the NEWS2 rise that counts as deterioration
    (``triage.trend_news2_rise``) come from the site policy. Only observations strictly before
    ``observed_at`` count, so a late-filed observation is compared with what preceded it clinically.
    With ``scope`` (the sender's), only observations the sender may read count: another facility's vital
    signs never shape a trend it is not allowed to see.
    """
    policy = ctx.policy
    rows = await db(
        ctx.record.results.triage_series,
        identifier=patient.identifier,
        issuer=patient.issuer,
        since=observed_at - timedelta(hours=policy.trend_window_hours),
        until=observed_at,
        scope=scope,
    )
    earlier = [SeriesPoint(**row) for row in rows]
    now = SeriesPoint(
        observed_at=observed_at,
        news2_total=news2.total,
        news2_complete=news2.complete,
        probability=probability,
        positive=positive,
    )
    return compute_trend(now, earlier, news2_rise=policy.trend_news2_rise)
