"""View models: what a template shows, made from the record's typed results (no I/O here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, Final

from inference.record import (
    AnyResult,
    ImagingResult,
    PriorStudies,
    RecentTriageResults,
    ViewedPatient,
    WorklistItem,
    iso,
)
from inference.security import WEB_PREFIX
from inference.services import SYNTHETIC_WARNING, OtherVerdict
from inference.vocabulary import (
    DETERIORATING,
    FINDING_DISPLAY,
    IDENTITY_MISMATCH,
    NEWS2_BAND_DISPLAY,
    VITAL_DISPLAY,
    read_warning,
)

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


def vital_name(field: str, language: str, *, capitalised: bool = True) -> str:
    """A vital sign's display name in ``language``, capitalised for a label unless told otherwise."""
    names = VITAL_DISPLAY.get(field)
    text = names.get(language, names["en"]) if names else field.replace("_", " ")  # type: ignore[call-overload]
    return text[:1].upper() + text[1:] if capitalised else text


def band_name(band: str | None, language: str) -> str:
    """A NEWS2 band in ``language``."""
    if not band:
        return "–"
    names = NEWS2_BAND_DISPLAY.get(band)
    return names.get(language, band) if names else band  # type: ignore[call-overload]


def ai_status(item: WorklistItem) -> str:
    """``analysed``, ``not_assessable`` (out of the model's distribution) or ``failed``."""
    if item.kind == "imaging" and item.assessable is False:
        return "not_assessable"
    if item.status == "failed":
        return "failed"
    return "analysed"


def minutes_waiting(created_at: datetime, now: datetime | None = None) -> float:
    """Minutes since a result was filed."""
    return ((now or datetime.now(UTC)) - created_at).total_seconds() / 60


def worklist_filter(priority: str | None, status: str | None) -> Callable[[WorklistItem], bool] | None:
    """The worklist's filters by priority and AI status as a test of one item; None without a filter."""
    if not priority and not status:
        return None

    def keep(item: WorklistItem) -> bool:
        return (not priority or item.priority == priority) and (not status or ai_status(item) == status)

    return keep


def worklist_rows(
    items: Sequence[WorklistItem], *, language: str, priority: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Worklist items filtered by priority and AI status (:func:`worklist_filter`), with what each column
    shows."""
    keep = worklist_filter(priority, status)
    rows = []
    for item in items:
        if keep is not None and not keep(item):
            continue
        state = ai_status(item)
        findings = [finding_name(code, language) for code in item.positive_findings]
        news2 = item.news2 or None
        band = None if news2 is None else news2.get("band")
        rows.append(
            {
                "id": item.result_id,
                "kind": item.kind,
                "priority": item.priority,
                "escalated": item.escalated,
                "minutes": minutes_waiting(item.created_at),
                "created_at": iso(item.created_at),
                "identifier": item.patient.identifier,
                "age": item.patient.age,
                "sex": item.patient.sex,
                "study_date": item.study_date if item.kind == "imaging" else None,
                "observed_at": None if item.observed_at is None else iso(item.observed_at),
                "modality": item.modality,
                "ai_status": state,
                "findings": findings if item.kind == "imaging" else [],
                "at_risk": item.kind == "triage" and bool(item.positive_findings),
                "worsening": bool((item.trend or {}).get("deteriorating")),
                "news2_band": band_name(str(band), language) if band else None,
                "news2_band_code": band,
                "news2_total": None if news2 is None else news2.get("total"),
                "model": f"{item.model.name} {item.model.version}",
                # Said on the line itself (the viewer's banner is one click away): a reader scanning the
                # list must see which suggestions come from a model trained on synthetic data only.
                "synthetic": item.model.synthetic,
            }
        )
    return rows


def localised_warning(sentence: str, language: str) -> dict[str, str]:
    """A result's warning as a page shows it: ``text`` in ``language`` and the ``lang`` it is written in.

    Results keep their warnings as English sentences (the API's contract); a sentence made from one of the
    product's phrases (:func:`inference.vocabulary.read_warning`) is written again from its values with
    the phrase's translation, the vital signs or demographics it lists in the reader's words. Any other
    sentence (an older version's, a site's) stays English, and says so.
    """
    from inference.api.ui._i18n import RTL, Formats, translations

    read = read_warning(sentence)
    if read is None or language == "en":
        return {"text": sentence, "lang": "en"}
    phrase, values = read
    translated = translations(language).gettext(phrase.text)
    if translated == phrase.text:
        return {"text": sentence, "lang": "en"}  # not in the catalogue (the tests see that it is)
    formats = Formats(language)
    if phrase in DETERIORATING:  # the hours and risk points with the locale's decimal sign
        from babel.numbers import format_decimal

        with suppress(ValueError):  # a sentence of another version's numbers stays as it was written
            hours, risk = float(values["hours"]), float(values["risk"])
            values["hours"] = format_decimal(hours, locale=language)
            values["risk"] = ("+" if risk >= 0 else "-") + format_decimal(
                abs(risk), format="0.0", locale=language
            )
    if language in RTL:
        # Each number, code or model name in its own direction (Unicode isolates): "NEWS2 +2" inside
        # Arabic text read "2+ NEWS2". The lists of signs or demographics are words of the page's language.
        worded = {*phrase.fields, *(("fields",) if phrase is IDENTITY_MISMATCH else ())}
        values = {name: value if name in worded else f"\u2068{value}\u2069" for name, value in values.items()}
    for name in phrase.fields:
        values[name] = formats.items(
            [vital_name(f, language, capitalised=False) for f in values[name].split(", ")]
        )
    if phrase is IDENTITY_MISMATCH:
        gettext = translations(language).gettext
        values["fields"] = formats.items([gettext(word) for word in values["fields"].split(", ")])
    try:
        return {"text": translated % values, "lang": language}
    except (KeyError, ValueError, TypeError):  # a catalogue entry whose placeholders are not the phrase's
        return {"text": sentence, "lang": "en"}


def _others_of(others: Sequence[OtherVerdict], code: str) -> list[dict[str, Any]]:
    """The other readers' verdicts on one finding, oldest first, as :file:`_verdict.html` lists them."""
    return [
        {
            # A web reader by username (``web:`` marks them on the audit trail), a token's by its subject.
            "reader": o.reader.removeprefix(WEB_PREFIX),
            "verdict": o.verdict,
            "correct_label": o.correct_label,
            "at": iso(o.at),
        }
        for o in others
        if o.code == code
    ]


def viewer_model(
    result: AnyResult,
    *,
    language: str,
    verdicts: dict[str, str],
    patient: ViewedPatient | None = None,
    others: Sequence[OtherVerdict] = (),
) -> dict[str, Any]:
    """What the viewer shows of one result (its rationale in ``language``, English when missing), with the
    patient's age and sex as the reader may read them (``patient``; none shown without)."""
    chosen = language if language in result.rationale else "en"
    model: dict[str, Any] = {
        "id": result.result_id,
        "kind": result.kind,
        "priority": result.priority,
        "status": result.status,
        "identifier": result.patient.identifier,
        "model_name": result.model.name,
        "model_version": result.model.version,
        # The synthetic-only sentence is shown as the page's own translated banner (``synthetic``); every
        # other warning in the reader's language when it is one of the product's sentences, else as it is,
        # whatever words it holds (a hospital data set's line may say "synthetic").
        "warnings": [localised_warning(w, language) for w in result.warnings if w != SYNTHETIC_WARNING],
        "rationale": result.rationale.get(chosen),
        "rationale_lang": chosen,
        "created_at": iso(result.created_at),
        "synthetic": result.model.synthetic,
        # The stored display rendering (grayscale, bounded size); the page falls back to the overlays of
        # results filed before renderings were kept (the image then answers 404).
        "display_image": f"/ui/results/{result.result_id}/image.png" if result.kind == "imaging" else None,
        # Age at the study (or when analysed: ``patient_age_at`` says which) and sex, shown, never logged.
        "patient_age": None if patient is None else patient.age,
        "patient_age_at": None if patient is None else patient.age_at,
        "patient_sex": None if patient is None else patient.sex,
    }
    if isinstance(result, ImagingResult):
        model["assessable"] = result.assessable
        model["ood"] = (
            None if result.ood is None else {"score": result.ood.score, "threshold": result.ood.threshold}
        )
        model["findings"] = [
            {
                "code": f.code,
                "name": finding_name(f.code, language),
                "probability": f.probability,
                "threshold": f.threshold,
                "positive": f.positive,
                "has_heatmap": f.heatmap,
                "box": None if f.box is None else list(f.box),
                "verdict": verdicts.get(f.code),
                "others": _others_of(others, f.code),
            }
            for f in result.findings
        ]
    else:
        news2: Mapping[str, Any] = result.news2 or {}
        subscores: Mapping[str, Any] = news2.get("subscores") or {}
        contributions = result.contributions
        vitals = result.vitals
        largest = max((abs(v) for v in contributions.values()), default=0.0) or 1.0
        model["risk"] = {
            "probability": result.risk.probability,
            "positive": result.risk.positive,
            "threshold": result.risk.threshold,
        }
        model["news2"] = news2
        model["news2_band"] = band_name(news2.get("band"), language)
        # The unmeasured signs by their names in the page's language (the record keeps the field names).
        # The model's ``missing`` inputs also list a sign it was not given though measured (SpO2 on NEWS2
        # Scale 2): that one was measured, and the score is no lower bound for it.
        unmeasured = [n for n in result.missing or news2.get("missing") or [] if vitals.get(n) is None]
        model["missing"] = [vital_name(name, language, capitalised=False) for name in unmeasured]
        model["trend"] = result.trend
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
        model["observed_at"] = iso(result.observed_at)
        model["verdict"] = verdicts.get("deterioration")
        model["others"] = _others_of(others, "deterioration")
    return model


def priors_model(priors: PriorStudies | None, *, language: str) -> dict[str, Any] | None:
    """What the viewer's "Prior studies" panel shows (None: no panel, a vital-signs result): per prior,
    newest first, its date, triage level, positive findings with their probabilities (none for an image
    the model refused), model, the readers' verdicts and whether it was marked read."""
    if priors is None:
        return None
    studies = []
    for prior in priors.studies:
        names = {f.code: finding_name(f.code, language) for f in prior.findings}
        studies.append(
            {
                "id": prior.result_id,
                # The study's own date; a study sent without one is dated by the day its result was filed.
                "date": prior.study_date or iso(prior.created_at),
                "priority": prior.priority,
                "assessable": prior.assessable,
                # A refused image has no score to compare with: its findings are not shown.
                "positives": [
                    {"name": names[f.code], "probability": f.probability}
                    for f in prior.findings
                    if prior.assessable and f.positive
                ],
                "model": f"{prior.model.name} {prior.model.version}",
                "synthetic": prior.model.synthetic,
                "verdicts": [
                    {
                        "name": names.get(v.code, finding_name(v.code, language)),
                        "verdict": v.verdict,
                        "label": None
                        if v.verdict == "agree" or v.correct_label is None
                        else ("present" if v.correct_label else "absent"),
                    }
                    for v in prior.verdicts.values()
                ],
                "read": prior.status == "reviewed",
            }
        )
    return {"studies": studies, "older": priors.older}


def triage_model(triage: RecentTriageResults | None, *, language: str) -> dict[str, Any] | None:
    """What the viewer's "Recent vital signs" panel shows beside a film (None: no panel, a vital-signs
    result): per triage result measured up to the film, newest measurement first, its time, how long
    before the film (minutes before the analysis, or whole days before the study's day in the server's
    time zone, as the record places the film), triage level, NEWS2 and whether the model flagged a
    deterioration risk; how many older ones were left out and how many were measured after the film; and
    where the film was placed (its analysis time, or its study's day)."""
    if triage is None:
        return None
    film_at = triage.film_at
    results = [
        {
            "id": t.result_id,
            "observed_at": iso(t.observed_at),
            "minutes_before": max((film_at - t.observed_at).total_seconds() / 60, 0),
            "days_before": max((film_at.astimezone().date() - t.observed_at.astimezone().date()).days, 0),
            "priority": t.priority,
            "at_risk": t.at_risk,
            "news2_total": t.news2_total,
            "news2_band": band_name(t.news2_band, language) if t.news2_band else None,
            "news2_band_code": t.news2_band,
        }
        for t in triage.results
    ]
    return {
        "results": results,
        "older": triage.older,
        "later": triage.later,
        "film_time": triage.film_time,
        "film_at": iso(film_at),
        "film_day": film_at.astimezone().date().isoformat(),
    }
