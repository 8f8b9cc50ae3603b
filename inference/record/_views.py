"""The public JSON of a result (CONTRACT.md): no name, no birth date, only what a reader needs."""

from __future__ import annotations

from typing import Any

from inference.record._models import Result
from inference.record._types import iso

TRIAGE_FEEDBACK_CODE = "deterioration"
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
    else:
        assert result.vitals is not None
        payload = result.payload
        out["observed_at"] = iso(result.vitals.observed_at)
        out["risk"] = dict(payload["risk"])
        out["contributions"] = dict(payload["contributions"])
        out["intercept"] = payload["intercept"]
        out["logit"] = payload["logit"]
        out["news2"] = payload["news2"]
    return out


def worklist_item(result: Result) -> dict[str, Any]:
    """One line of the worklist: enough to triage and open the result, nothing identifying beyond the id."""
    item: dict[str, Any] = {
        "result_id": result.id,
        "kind": result.kind,
        "priority": result.priority,
        "status": result.status,
        "created_at": iso(result.created_at),
        "patient": {"id": result.patient.id, "identifier": result.patient.identifier},
        "model": {"name": result.model_name, "version": result.model_version},
        "warnings": list(result.warnings),
    }
    if result.kind == "imaging":
        item["study_instance_uid"] = result.study.study_instance_uid if result.study else None
        item["positive_findings"] = [finding.code for finding in result.findings if finding.positive]
    else:
        item["observed_at"] = iso(result.vitals.observed_at) if result.vitals else None
        item["positive_findings"] = [TRIAGE_FEEDBACK_CODE] if result.payload["risk"]["positive"] else []
    return item
