"""Typed views of stored rows (:mod:`inference.record._result_types`): no name, no birth date."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypedDict, cast

from inference.record._models import Finding, Result
from inference.record._result_types import (
    AnyResult,
    Delivery,
    FindingResult,
    ImagingResult,
    ModelInfo,
    OodScore,
    PatientRef,
    PendingBuild,
    Priority,
    Risk,
    TriageResult,
    WorklistItem,
    WorklistPatient,
)
from inference.record._types import age_at

TRIAGE_FEEDBACK_CODE = "deterioration"
"""The one "finding" a triage result has, for reader feedback."""
VITAL_FIELDS = (
    "respiratory_rate", "spo2", "spo2_scale", "on_oxygen", "systolic_bp", "diastolic_bp", "heart_rate",
    "temperature", "consciousness",
)  # fmt: skip
"""The measured signs in the contract's names and units: the vital-sign columns a triage result files
(:mod:`inference.record._save`) and shows back (``vitals``)."""


# The warning the server wrote in every result of a synthetic model before the flag was kept with results.
_SYNTHETIC_WARNING_BEFORE_FLAG = "This model was trained on synthetic data only;"


def filed_synthetic(result: Result) -> bool:
    """Whether the model of a stored result was trained on synthetic data only.

    The flag filed with the result (``payload["synthetic"]``); a result filed before the flag was kept
    has the English sentence the server then wrote for such a model, word for word, as its evidence.
    """
    flag = (result.payload or {}).get("synthetic")
    if isinstance(flag, bool):
        return flag
    return any(w.startswith(_SYNTHETIC_WARNING_BEFORE_FLAG) for w in result.warnings or ())


def heatmap_url(result_id: str, code: str) -> str:
    """The API path of a finding's heatmap, relative to the server root."""
    return f"/v1/results/{result_id}/heatmaps/{code}.png"


def _box(value: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    if not value:
        return None
    x0, y0, x1, y1 = (int(v) for v in value)
    return (x0, y0, x1, y1)


def _ood(value: Mapping[str, Any] | None) -> OodScore | None:
    if not value or value.get("threshold") is None:
        return None
    score = value.get("score")
    return OodScore(score=None if score is None else float(score), threshold=float(value["threshold"]))


class _Common(TypedDict):
    """The fields of :class:`FiledResult`, which every kind of typed result has, as keyword arguments
    (a ``TypedDict``, so ``**common`` is type-checked)."""

    result_id: str
    patient: PatientRef
    model: ModelInfo
    priority: Priority
    status: str
    warnings: tuple[str, ...]
    created_at: datetime
    rationale: Mapping[str, str]


def finding_result(
    *,
    code: str,
    display: str,
    probability: float,
    positive: bool,
    threshold: float,
    box: Sequence[int] | None,
    has_heatmap: bool,
    **_others: Any,
) -> FindingResult:
    """The typed finding of a ``findings`` row's values (by column name; other columns ignored)."""
    return FindingResult(
        code=code,
        display=display,
        probability=probability,
        positive=positive,
        threshold=threshold,
        box=_box(box),
        heatmap=has_heatmap,
    )


def filed_findings(rows: Iterable[Finding]) -> tuple[FindingResult, ...]:
    """The typed findings of a result's filed ``findings`` rows."""
    return tuple(
        finding_result(
            code=f.code,
            display=f.display,
            probability=f.probability,
            positive=f.positive,
            threshold=f.threshold,
            box=f.box,
            has_heatmap=f.has_heatmap,
        )
        for f in rows
    )


def typed_result(
    result: Result,
    *,
    deliveries: tuple[Delivery, ...] = (),
    build: PendingBuild | None = None,
    findings: tuple[FindingResult, ...] | None = None,
) -> AnyResult:
    """The typed result of a stored row (its patient, findings, study and vitals loaded; ``findings``:
    those of an imaging result already typed, instead of its loaded rows)."""
    common: _Common = {
        "result_id": result.id,
        "patient": PatientRef(id=result.patient.id, identifier=result.patient.identifier),
        "model": ModelInfo(
            name=result.model_name,
            version=result.model_version,
            sha256=result.model_sha256,
            synthetic=filed_synthetic(result),
        ),
        "priority": cast(Priority, result.priority),
        "status": result.status,
        "warnings": tuple(result.warnings),
        "created_at": result.created_at,
        "rationale": dict(result.rationale),
    }
    if result.kind == "imaging":
        assert result.study is not None  # the schema's CHECK guarantees it for imaging results
        return ImagingResult(
            **common,
            study_instance_uid=result.study.study_instance_uid,
            findings=findings if findings is not None else filed_findings(result.findings),
            assessable=result.assessable,
            ood=_ood(result.ood),
            deliveries=deliveries,
            build=build,
        )
    assert result.vitals is not None
    payload = result.payload
    risk = payload["risk"]
    # Results filed before "missing" was stored: the unmeasured inputs are the vitals left empty.
    missing = payload.get(
        "missing", [k for k in payload["contributions"] if getattr(result.vitals, k, None) is None]
    )
    return TriageResult(
        **common,
        observed_at=result.vitals.observed_at,
        risk=Risk(
            probability=float(risk["probability"]),
            positive=bool(risk["positive"]),
            threshold=None if risk.get("threshold") is None else float(risk["threshold"]),
        ),
        contributions=dict(payload["contributions"]),
        intercept=float(payload["intercept"]),
        logit=float(payload["logit"]),
        news2=payload.get("news2"),
        missing=tuple(missing),
        trend=payload.get("trend"),
        vitals={
            name: getattr(result.vitals, name)
            for name in VITAL_FIELDS
            if getattr(result.vitals, name) is not None
        },
    )


def with_deliveries(
    typed: ImagingResult, rows: tuple[Delivery, ...], build: PendingBuild | None
) -> ImagingResult:
    """``typed`` with its DICOM outputs per destination: the queued objects ``rows`` and, while the
    outputs are not built yet (``build``), one ``outputs`` entry per destination still waiting for them."""
    if build is None:
        return replace(typed, deliveries=rows)
    sent_to = {row.destination for row in rows}
    waiting = tuple(
        Delivery(
            destination=name,
            kind="outputs",
            object=None,
            state=build.state,
            attempts=build.attempts,
            sent_at=None,
            last_error=build.last_error,
            error=build.error_code,
        )
        for name in build.destinations
        if name not in sent_to
    )
    return replace(typed, deliveries=rows + waiting, build=build)


def worklist_item(
    result: Result, *, patient_shown: bool, escalate_before: datetime | None = None
) -> WorklistItem:
    """One line of the worklist: enough to triage and open the result; of the patient only the identifier,
    age and sex (never the name or birth date).

    Args:
        patient_shown: The reader may read the patient itself (``_scope.visible`` of a patient-level
            row: its first facility, the patient's sharing consent, the reader's break-the-glass grant):
            age and sex are the patient's on file (what its first facility recorded). Otherwise they are
            what this result's own facility sent with it (None for results filed before migration 0014):
            a facility that filed a result of someone else's patient reads its result, not the patient.
    """
    imaging = result.kind == "imaging"
    study = result.study if imaging else None
    news2 = None if imaging else result.payload.get("news2")
    if imaging:
        positive = tuple(f.code for f in result.findings if f.positive)
    else:
        positive = (TRIAGE_FEEDBACK_CODE,) if result.payload["risk"]["positive"] else ()
    return WorklistItem(
        result_id=result.id,
        kind="imaging" if imaging else "triage",
        priority=cast(Priority, result.priority),
        status=result.status,
        created_at=result.created_at,
        escalated=bool(
            escalate_before is not None
            and result.priority == "routine"
            and result.created_at < escalate_before
        ),
        patient=WorklistPatient(
            id=result.patient.id,
            identifier=result.patient.identifier,
            age=age_at(result.patient.birth_date, result.created_at) if patient_shown else result.patient_age,
            sex=result.patient.sex if patient_shown else result.patient_sex,
        ),
        model=ModelInfo(
            name=result.model_name, version=result.model_version, synthetic=filed_synthetic(result)
        ),
        warnings=tuple(result.warnings),
        positive_findings=positive,
        study_instance_uid=study.study_instance_uid if study else None,
        study_date=study.study_date if study else None,
        modality=study.modality if study else None,
        assessable=result.assessable if imaging else None,
        observed_at=result.vitals.observed_at if not imaging and result.vitals else None,
        news2=None if not news2 else {k: news2.get(k) for k in ("total", "band", "complete")},
        trend=None if imaging else result.payload.get("trend"),
    )
