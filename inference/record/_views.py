"""The public JSON of a result (CONTRACT.md): no name, no birth date, only what a reader needs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from inference.record._models import Result
from inference.record._types import iso

TRIAGE_FEEDBACK_CODE = "deterioration"
VITAL_FIELDS = (
    "respiratory_rate", "spo2", "spo2_scale", "on_oxygen", "systolic_bp", "diastolic_bp", "heart_rate",
    "temperature", "consciousness",
)  # fmt: skip
"""The measured signs a triage result shows (``vitals``), in the contract's names and units."""
"""The one "finding" a triage result has, for reader feedback."""


def heatmap_url(result_id: str, code: str) -> str:
    """The API path of a finding's heatmap, relative to the server root."""
    return f"/v1/results/{result_id}/heatmaps/{code}.png"


def public_result(result: Result) -> dict[str, Any]:
    """The result as the API returns it."""
    out: dict[str, Any] = {
        "result_id": result.id,
        "kind": result.kind,
        "patient": {"id": result.patient.id, "identifier": result.patient.identifier},
        "model": {"name": result.model_name, "version": result.model_version, "sha256": result.model_sha256},
        "priority": result.priority,
        "status": result.status,
        "warnings": list(result.warnings),
        "created_at": iso(result.created_at),
        "rationale": dict(result.rationale),
    }
    if result.kind == "imaging":
        assert result.study is not None  # the schema's CHECK guarantees it for imaging results
        out["study_instance_uid"] = result.study.study_instance_uid
        out["findings"] = [
            {
                "code": finding.code,
                "display": finding.display,
                "probability": finding.probability,
                "positive": finding.positive,
                "threshold": finding.threshold,
                "box": finding.box,
                "heatmap": heatmap_url(result.id, finding.code) if finding.has_heatmap else None,
            }
            for finding in result.findings
        ]
        out["assessable"] = result.assessable
        out["ood"] = result.ood
    else:
        assert result.vitals is not None
        payload = result.payload
        out["observed_at"] = iso(result.vitals.observed_at)
        out["risk"] = dict(payload["risk"])
        out["contributions"] = dict(payload["contributions"])
        out["intercept"] = payload["intercept"]
        out["logit"] = payload["logit"]
        out["news2"] = payload["news2"]
        # Results filed before "missing" was stored: the unmeasured inputs are the vitals left empty.
        out["missing"] = list(
            payload.get(
                "missing", [k for k in payload["contributions"] if getattr(result.vitals, k, None) is None]
            )
        )
        out["trend"] = payload.get("trend")
        out["vitals"] = {
            name: getattr(result.vitals, name)
            for name in VITAL_FIELDS
            if getattr(result.vitals, name) is not None
        }
    return out


def _age(birth_date: str | None, at: datetime) -> int | None:
    """Age in whole years at ``at`` (None when the birth date is unknown or malformed)."""
    if not birth_date:
        return None
    try:
        born = date.fromisoformat(birth_date)
    except ValueError:
        return None
    years = at.year - born.year - ((at.month, at.day) < (born.month, born.day))
    return years if 0 <= years < 150 else None


def worklist_item(result: Result, *, escalate_before: datetime | None = None) -> dict[str, Any]:
    """One line of the worklist: enough to triage and open the result; of the patient only the identifier,
    age and sex (never the name or birth date)."""
    item: dict[str, Any] = {
        "result_id": result.id,
        "kind": result.kind,
        "priority": result.priority,
        "status": result.status,
        "created_at": iso(result.created_at),
        "escalated": bool(
            escalate_before is not None
            and result.priority == "routine"
            and result.created_at < escalate_before
        ),
        "patient": {
            "id": result.patient.id,
            "identifier": result.patient.identifier,
            "age": _age(result.patient.birth_date, result.created_at),
            "sex": result.patient.sex,
        },
        "model": {"name": result.model_name, "version": result.model_version},
        "warnings": list(result.warnings),
    }
    if result.kind == "imaging":
        item["study_instance_uid"] = result.study.study_instance_uid if result.study else None
        item["study_date"] = result.study.study_date if result.study else None
        item["modality"] = result.study.modality if result.study else None
        item["positive_findings"] = [finding.code for finding in result.findings if finding.positive]
        item["assessable"] = result.assessable
    else:
        item["observed_at"] = iso(result.vitals.observed_at) if result.vitals else None
        item["positive_findings"] = [TRIAGE_FEEDBACK_CODE] if result.payload["risk"]["positive"] else []
        news2 = result.payload.get("news2")
        item["news2"] = None if not news2 else {k: news2.get(k) for k in ("total", "band", "complete")}
        item["trend"] = result.payload.get("trend")
    return item
