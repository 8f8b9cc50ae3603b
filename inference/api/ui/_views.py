"""View models: what a template shows, made from the services' plain dicts (no I/O here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from inference.vocabulary import FINDING_DISPLAY, NEWS2_BAND_DISPLAY, VITAL_DISPLAY

PRIORITIES: Final = ("critical", "urgent", "routine")
AI_STATUSES: Final = ("analysed", "not_assessable", "failed")
VITAL_UNITS: Final[dict[str, str]] = {
    "respiratory_rate": "/min",
    "spo2": "%",
    "systolic_bp": "mmHg",
    "diastolic_bp": "mmHg",
    "heart_rate": "/min",
    "temperature": "°C",
}
VITAL_ORDER: Final = (
    "respiratory_rate", "spo2", "on_oxygen", "systolic_bp", "diastolic_bp", "heart_rate", "temperature",
    "consciousness",
)  # fmt: skip


def finding_name(code: str, language: str) -> str:
    """A finding's display name in ``language``, capitalised for a label."""
    names = FINDING_DISPLAY.get(code)
    text = names.get(language, names["en"]) if names else code.replace("_", " ")  # type: ignore[call-overload]
    return text[:1].upper() + text[1:]


def vital_name(field: str, language: str) -> str:
    """A vital sign's display name in ``language``, capitalised."""
    names = VITAL_DISPLAY.get(field)
    text = names.get(language, names["en"]) if names else field.replace("_", " ")  # type: ignore[call-overload]
    return text[:1].upper() + text[1:]


def band_name(band: str | None, language: str) -> str:
    """A NEWS2 band in ``language``."""
    if not band:
        return "–"
    names = NEWS2_BAND_DISPLAY.get(band)
    return names.get(language, band) if names else band  # type: ignore[call-overload]


def ai_status(item: dict[str, Any]) -> str:
    """``analysed``, ``not_assessable`` (out of the model's distribution) or ``failed``."""
    if item.get("kind") == "imaging" and item.get("assessable") is False:
        return "not_assessable"
    if item.get("status") == "failed" or item.get("analysis_status") == "failed":
        return "failed"
    return "analysed"


def minutes_waiting(created_at: str, now: datetime | None = None) -> float:
    """Minutes since a result was filed."""
    moment = datetime.fromisoformat(created_at)
    return ((now or datetime.now(UTC)) - moment).total_seconds() / 60


def worklist_rows(
    items: list[dict[str, Any]], *, language: str, priority: str | None, status: str | None
) -> list[dict[str, Any]]:
    """Worklist items filtered by priority and AI status, with what each column shows."""
    rows = []
    for item in items:
        state = ai_status(item)
        if priority and item["priority"] != priority:
            continue
        if status and state != status:
            continue
        findings = [finding_name(code, language) for code in item.get("positive_findings", [])]
        news2 = item.get("news2") or None
        rows.append(
            {
                "id": item["result_id"],
                "kind": item["kind"],
                "priority": item["priority"],
                "escalated": bool(item.get("escalated")),
                "minutes": minutes_waiting(item["created_at"]),
                "created_at": item["created_at"],
                "identifier": item["patient"]["identifier"],
                "age": item["patient"].get("age"),
                "sex": item["patient"].get("sex"),
                "study_date": item.get("study_date") if item["kind"] == "imaging" else None,
                "observed_at": item.get("observed_at"),
                "modality": item.get("modality"),
                "ai_status": state,
                "findings": findings if item["kind"] == "imaging" else [],
                "at_risk": item["kind"] == "triage" and bool(item.get("positive_findings")),
                "worsening": bool((item.get("trend") or {}).get("deteriorating")),
                "news2_band": band_name(news2.get("band"), language) if news2 else None,
                "news2_band_code": news2.get("band") if news2 else None,
                "news2_total": news2.get("total") if news2 else None,
                "model": f"{item['model']['name']} {item['model']['version']}",
            }
        )
    return rows


def viewer_model(result: dict[str, Any], *, language: str, verdicts: dict[str, str]) -> dict[str, Any]:
    """What the viewer shows of one result."""
    model: dict[str, Any] = {
        "id": result["result_id"],
        "kind": result["kind"],
        "priority": result["priority"],
        "status": result.get("status"),
        "identifier": result["patient"]["identifier"],
        "model_name": result["model"]["name"],
        "model_version": result["model"]["version"],
        "warnings": list(result.get("warnings", [])),
        "rationale": result.get("rationale"),
        "rationale_lang": result.get("rationale_language") or language,
        "created_at": result.get("created_at"),
        "synthetic": any("synthetic" in w.lower() for w in result.get("warnings", [])),
        # The stored display rendering (grayscale, bounded size); the page falls back to the overlays of
        # results filed before renderings were kept (the image then answers 404).
        "display_image": f"/ui/results/{result['result_id']}/image.png"
        if result["kind"] == "imaging"
        else None,
    }
    if result["kind"] == "imaging":
        model["assessable"] = result.get("assessable", True) is not False
        model["ood"] = result.get("ood")
        model["findings"] = [
            {
                "code": f["code"],
                "name": finding_name(f["code"], language),
                "probability": f["probability"],
                "threshold": f.get("threshold"),
                "positive": bool(f["positive"]),
                "has_heatmap": bool(f.get("heatmap")),
                "box": f.get("box"),
                "verdict": verdicts.get(f["code"]),
            }
            for f in result.get("findings", [])
        ]
    else:
        news2 = result.get("news2") or {}
        subscores = news2.get("subscores") or {}
        contributions = result.get("contributions") or {}
        vitals = result.get("vitals") or {}
        largest = max((abs(v) for v in contributions.values()), default=0.0) or 1.0
        model["risk"] = result.get("risk") or {}
        model["news2"] = news2
        model["news2_band"] = band_name(news2.get("band"), language)
        model["missing"] = list(result.get("missing") or news2.get("missing") or [])
        model["trend"] = result.get("trend")
        model["vitals"] = [
            {
                "field": name,
                "name": vital_name(name, language),
                "value": vitals.get(name),
                "unit": VITAL_UNITS.get(name, ""),
                "subscore": subscores.get(name),
            }
            for name in VITAL_ORDER
            if name in vitals or name in subscores
        ]
        model["contributions"] = [
            {
                "field": name,
                "name": vital_name(name, language),
                "value": value,
                "width": round(100 * abs(value) / largest, 1),
                "sign": "up" if value > 0 else "down",
            }
            for name, value in sorted(contributions.items(), key=lambda kv: -abs(kv[1]))
        ]
        model["verdict"] = verdicts.get("deterioration")
    return model
