"""Drift of the served imaging model: observed after each filed result, reported from the record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inference.services._context import Context, db

if TYPE_CHECKING:
    from inference.analysis import Analysis
    from inference.config import Settings
    from inference.record import Record
    from inference.runtime import ServedModel


def observe_drift(ctx: Context, served: ServedModel, analysis: Analysis) -> None:
    """Add one filed imaging result to its model version's rolling window (``/metrics``, alert log)."""
    meta = served.imaging_meta
    ctx.host.drift.observe(
        model=served.name,
        version=served.version,
        reference=meta.reference,
        labels=meta.labels,
        ood_score=analysis.ood.score,
        probabilities=[analysis.finding(code).probability for code in meta.labels],
    )


def _report(
    record: Record, served: ServedModel, *, window: int, alert_level: float, min_observations: int
) -> dict[str, Any]:
    from inference.runtime import compute_report

    meta = served.imaging_meta
    base: dict[str, Any] = {"model": served.name, "version": served.version}
    if meta.reference is None:
        return {**base, "reference": False, "alert": False, "psi": {}, "observations": 0}
    rows = record.results.recent_imaging_scores(
        model_name=served.name, model_version=served.version, limit=window
    )
    report = compute_report(
        model=served.name,
        version=served.version,
        reference=meta.reference,
        labels=meta.labels,
        rows=[(score, [probs.get(code, float("nan")) for code in meta.labels]) for score, probs in rows],
        window=window,
        alert_level=alert_level,
        min_observations=min_observations,
    )
    return {**report.to_dict(), "reference": True, "reference_n": meta.reference.n}


async def drift_report(*, ctx: Context) -> dict[str, Any]:
    """Drift of the served imaging model version over its last results in the record (every replica's).

    The window, alert level and minimum observations are the process settings; the reference is the
    served version's validation distributions. ``reference`` is false for a model that carries none.
    """
    monitor = ctx.host.drift
    return await db(
        _report,
        ctx.record,
        ctx.host.imaging,
        window=monitor.window,
        alert_level=monitor.alert_level,
        min_observations=monitor.min_observations,
    )


def drift_report_offline(settings: Settings, *, alias: str = "champion") -> dict[str, Any]:
    """:func:`drift_report` without a running server: the cached model of ``alias`` and the record."""
    from inference.record import Record
    from inference.runtime import IMAGING_MODEL, load_served_model
    from inference.services._engines import registry_fetch

    served = load_served_model(
        registry_fetch(settings)(IMAGING_MODEL, alias), settings.runtime, alias=alias, expected_kind="imaging"
    )
    record = Record(settings.record_url)
    try:
        return _report(
            record,
            served,
            window=settings.runtime.drift_window,
            alert_level=settings.runtime.drift_psi_alert,
            min_observations=settings.runtime.drift_min_observations,
        )
    finally:
        record.close()
