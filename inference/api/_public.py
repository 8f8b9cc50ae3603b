"""The public JSON shape of results, made here at the API edge from the record's typed results.

The record and the services hand results around as frozen dataclasses
(:mod:`inference.record._result_types`); only this module knows the contract's field names, the heatmap
URLs and the time format of the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

from inference.api import schemas
from inference.record import (
    AnyResult,
    Delivery,
    ImagingResult,
    ModelInfo,
    WorklistItem,
    heatmap_url,
    iso,
)


def _model(model: ModelInfo, *, sha256: bool = True) -> schemas.ModelRef:
    return schemas.ModelRef(
        name=model.name,
        version=model.version,
        sha256=model.sha256 if sha256 else None,
        synthetic=model.synthetic,
    )


def _delivery(delivery: Delivery) -> schemas.Delivery:
    return schemas.Delivery(
        destination=delivery.destination,
        kind=delivery.kind,
        object=delivery.object,
        state=delivery.state,
        attempts=delivery.attempts,
        sent_at=None if delivery.sent_at is None else iso(delivery.sent_at),
        last_error=delivery.last_error,
        error=delivery.error,
    )


def _rationale(texts: Mapping[str, str], language: str) -> tuple[str | None, str]:
    chosen = language if language in texts else "en"
    return texts.get(chosen), chosen


class _Common(TypedDict):
    """The public fields every kind of result has."""

    result_id: str
    patient: schemas.PatientRef
    model: schemas.ModelRef
    priority: schemas.Priority
    status: str | None
    warnings: list[str]
    created_at: str | None
    rationale: str | None
    rationale_language: str | None


def _common(result: AnyResult, language: str) -> _Common:
    """The fields every kind of result has, its rationale in ``language`` (English when missing)."""
    rationale, chosen = _rationale(result.rationale, language)
    return {
        "result_id": result.result_id,
        "patient": schemas.PatientRef(id=result.patient.id, identifier=result.patient.identifier),
        "model": _model(result.model),
        "priority": result.priority,
        "status": result.status,
        "warnings": list(result.warnings),
        "created_at": iso(result.created_at),
        "rationale": rationale,
        "rationale_language": chosen,
    }


def _imaging(result: ImagingResult, language: str) -> schemas.ImagingResult:
    return schemas.ImagingResult(
        kind="imaging",
        **_common(result, language),
        study_instance_uid=result.study_instance_uid,
        findings=[
            schemas.Finding(
                code=f.code,
                display=f.display,
                probability=f.probability,
                positive=f.positive,
                threshold=f.threshold,
                box=None if f.box is None else list(f.box),
                heatmap=heatmap_url(result.result_id, f.code) if f.heatmap else None,
            )
            for f in result.findings
        ],
        assessable=result.assessable,
        ood=None
        if result.ood is None
        else schemas.OodScore(score=result.ood.score, threshold=result.ood.threshold),
        deliveries=[_delivery(d) for d in result.deliveries],
    )


def public_result(result: AnyResult, *, language: str) -> schemas.ImagingResult | schemas.TriageResult:
    """The contract's JSON of one result, its rationale in ``language`` (English when missing)."""
    if isinstance(result, ImagingResult):
        return _imaging(result, language)
    news2 = None if result.news2 is None else schemas.News2.model_validate(dict(result.news2))
    trend = None if result.trend is None else schemas.Trend.model_validate(dict(result.trend))
    return schemas.TriageResult(
        kind="triage",
        **_common(result, language),
        observed_at=iso(result.observed_at),
        risk=schemas.Risk(
            probability=result.risk.probability,
            positive=result.risk.positive,
            threshold=result.risk.threshold,
        ),
        contributions=dict(result.contributions),
        missing=list(result.missing),
        intercept=result.intercept,
        logit=result.logit,
        news2=news2,
        trend=trend,
    )


def public_worklist(items: Sequence[WorklistItem], *, limit: int, offset: int) -> schemas.Worklist:
    """The contract's JSON of a worklist page."""
    return schemas.Worklist(
        items=[
            schemas.WorklistItem(
                result_id=item.result_id,
                kind=item.kind,
                priority=item.priority,
                status=item.status,
                created_at=iso(item.created_at),
                patient=schemas.PatientRef(id=item.patient.id, identifier=item.patient.identifier),
                model=_model(item.model, sha256=False),
                warnings=list(item.warnings),
                study_instance_uid=item.study_instance_uid,
                observed_at=None if item.observed_at is None else iso(item.observed_at),
                positive_findings=list(item.positive_findings),
                news2=None if not item.news2 else schemas.News2Summary.model_validate(dict(item.news2)),
                trend=None if item.trend is None else schemas.Trend.model_validate(dict(item.trend)),
                assessable=item.assessable,
            )
            for item in items
        ],
        limit=limit,
        offset=offset,
    )
