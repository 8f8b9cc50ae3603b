"""Short plain-language rationales in English, French and Modern Standard Arabic.

Every rationale ends with the reminder that it is an AI suggestion to be confirmed by a clinician.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from inference.vocabulary import LANGUAGES, NEWS2_BAND_DISPLAY, VITAL_DISPLAY, Language, finding_display

DEFAULT_LANGUAGE: Final[Language] = "en"

_NBSP: Final = "\u00a0"

_TEXT: Final[dict[str, dict[Language, str]]] = {
    "reminder": {
        "en": "This is an AI suggestion and must be confirmed by a clinician.",
        "fr": "Il s'agit d'une suggestion produite par une IA, qui doit être confirmée par un clinicien.",
        "ar": "هذا اقتراح صادر عن نظام ذكاء اصطناعي، ويجب أن يؤكده طبيب.",
    },
    "synthetic": {
        "en": "The model was trained on synthetic data only and is not validated for clinical use.",
        "fr": (
            "Le modèle a été entraîné uniquement sur des données synthétiques et n'est pas validé pour un "
            "usage clinique."
        ),
        "ar": "دُرِّب النموذج على بيانات اصطناعية فقط، وهو غير معتمد للاستخدام السريري.",
    },
    "positives": {
        "en": "Findings suggested by the model: {items}.",
        "fr": f"Anomalies suggérées par le modèle{_NBSP}: {{items}}.",
        "ar": "النتائج التي يقترحها النموذج: {items}.",
    },
    "item": {
        "en": "{name} (probability {p})",
        "fr": "{name} (probabilité {p})",
        "ar": "{name} (احتمال {p})",
    },
    "none": {
        "en": "No finding reached its decision threshold; the highest probability was for {name} ({p}).",
        "fr": (
            f"Aucune anomalie n'atteint son seuil de décision{_NBSP}; la probabilité la plus élevée concerne "
            "{name} ({p})."
        ),
        "ar": "لم تبلغ أي نتيجة عتبة القرار الخاصة بها، وكان أعلى احتمال لـ{name} ({p}).",
    },
    "not_assessable": {
        "en": (
            "Not assessable by this model: the image is outside what the model was trained on (for example "
            "another body part, another modality or heavy artefacts), so no finding is reported and the AI "
            "did not raise the priority. The image needs a reader."
        ),
        "fr": (
            "Non évaluable par ce modèle : l'image sort de ce sur quoi le modèle a été entraîné (par "
            "exemple une autre région anatomique, une autre modalité ou des artefacts importants) ; "
            "aucune anomalie n'est signalée et l'IA n'a pas relevé la priorité. L'image doit être lue."
        ),
        "ar": (
            "غير قابلة للتقييم بهذا النموذج: الصورة خارج نطاق ما دُرِّب عليه النموذج (مثل جزء آخر من الجسم أو "
            "طريقة تصوير أخرى أو تشوهات شديدة)، لذلك لا تُذكر أي نتيجة ولم يرفع الذكاء الاصطناعي الأولوية. "
            "يجب أن يقرأ الصورة طبيب."
        ),
    },
    "no_findings": {
        "en": "The model reported no findings.",
        "fr": "Le modèle n'a signalé aucune anomalie.",
        "ar": "لم يُبلغ النموذج عن أي نتيجة.",
    },
    "risk_high": {
        "en": "The model estimates the risk of clinical deterioration at {p}, above its alert threshold.",
        "fr": "Le modèle estime le risque de dégradation clinique à {p}, au-dessus de son seuil d'alerte.",
        "ar": "يقدّر النموذج خطر التدهور السريري بنسبة {p}، وهي أعلى من عتبة التنبيه.",
    },
    "risk_low": {
        "en": "The model estimates the risk of clinical deterioration at {p}, below its alert threshold.",
        "fr": "Le modèle estime le risque de dégradation clinique à {p}, en dessous de son seuil d'alerte.",
        "ar": "يقدّر النموذج خطر التدهور السريري بنسبة {p}، وهي أدنى من عتبة التنبيه.",
    },
    "contributors": {
        "en": "The measurements that raised it most: {items}.",
        "fr": f"Mesures qui l'ont le plus augmenté{_NBSP}: {{items}}.",
        "ar": "القياسات التي رفعته أكثر من غيرها: {items}.",
    },
    "news2": {
        "en": "NEWS2 score {total} ({band} clinical risk).",
        "fr": f"Score NEWS2{_NBSP}: {{total}} (risque clinique {{band}}).",
        "ar": "مجموع نقاط NEWS2 هو {total} (خطر سريري {band}).",
    },
    "news2_partial": {
        "en": "NEWS2 of the measured vital signs: at least {total} (clinical risk band at least {band}); "
        "some are missing.",
        "fr": f"Score NEWS2 des paramètres mesurés{_NBSP}: au moins {{total}} (risque clinique au moins "
        f"{{band}}){_NBSP}; certains manquent.",
        "ar": "مجموع نقاط NEWS2 للعلامات الحيوية المقيسة: {total} على الأقل (فئة الخطر السريري {band} على "
        "الأقل)؛ بعضها غير متوفر.",
    },
    "deteriorating": {
        "en": "The patient's observations over the last {hours} h show deterioration.",
        "fr": f"Les observations du patient sur les dernières {{hours}}{_NBSP}h montrent une dégradation.",
        "ar": "تُظهر ملاحظات المريض خلال آخر {hours} ساعة تدهورًا.",
    },
    "news2_missing": {
        "en": "NEWS2 was not computed because some vital signs are missing.",
        "fr": "Le score NEWS2 n'a pas été calculé car certains paramètres vitaux manquent.",
        "ar": "لم يُحسب مجموع نقاط NEWS2 لعدم توفر بعض العلامات الحيوية.",
    },
}

_LIST_SEPARATOR: Final[dict[Language, str]] = {"en": ", ", "fr": ", ", "ar": "، "}


def choose_language(accept_language: str | None) -> Language:
    """Pick ``en``, ``fr`` or ``ar`` from an HTTP ``Accept-Language`` header.

    Quality values are honoured (``q=0`` excludes a language); among equal qualities the first listed
    wins; region subtags are ignored (``fr-CA`` is French). Anything unsupported or malformed falls back
    to English.
    """
    if not accept_language:
        return DEFAULT_LANGUAGE
    best: tuple[float, int, Language] | None = None
    for position, part in enumerate(accept_language.split(",")):
        fields = [f.strip() for f in part.split(";")]
        tag = fields[0].lower()
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0  # a malformed weight makes the entry unusable, not the header
        if not 0.0 < quality <= 1.0:
            continue
        primary = tag.split("-")[0]
        language: Language | None = DEFAULT_LANGUAGE if primary == "*" else _as_language(primary)
        if language is None:
            continue
        candidate = (-quality, position, language)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best is not None else DEFAULT_LANGUAGE


def _as_language(primary: str) -> Language | None:
    for language in LANGUAGES:
        if primary == language:
            return language
    return None


def format_probability(probability: float, lang: Language) -> str:
    """A probability as a whole percentage in the conventions of ``lang``: ``<1%`` and ``>99%`` at the
    ends, never ``0%`` or ``100%``, which a model's output cannot mean (a certainty no model has)."""
    percent = probability * 100.0
    text = "<1" if percent < 0.5 else (">99" if percent >= 99.5 else f"{percent:.0f}")
    if lang == "fr":
        return f"{text}{_NBSP}%"
    if lang == "ar":
        return f"{text}٪"
    return f"{text}%"


def _ending(lang: Language, synthetic: bool) -> list[str]:
    return ([_TEXT["synthetic"][lang]] if synthetic else []) + [_TEXT["reminder"][lang]]


def imaging_rationale(
    findings: Sequence[tuple[str, float, bool]],
    lang: Language = "en",
    *,
    synthetic: bool = False,
    assessable: bool = True,
) -> str:
    """Explain an imaging result in a few sentences.

    Args:
        findings: ``(code, calibrated probability, positive)`` per finding.
        lang: ``en``, ``fr`` or ``ar``.
        synthetic: add the sentence saying the model was trained on synthetic data.
        assessable: False when the model refused the image as out of its distribution: the rationale
            then says "not assessable" and names no finding or probability.
    """
    if not assessable:
        return " ".join([_TEXT["not_assessable"][lang], *_ending(lang, synthetic)])
    sentences: list[str] = []
    positives = sorted((f for f in findings if f[2]), key=lambda f: -f[1])
    if positives:
        items = _LIST_SEPARATOR[lang].join(
            _TEXT["item"][lang].format(name=finding_display(code, lang), p=format_probability(p, lang))
            for code, p, _ in positives
        )
        sentences.append(_TEXT["positives"][lang].format(items=items))
    elif findings:
        code, p, _ = max(findings, key=lambda f: f[1])
        sentences.append(
            _TEXT["none"][lang].format(name=finding_display(code, lang), p=format_probability(p, lang))
        )
    else:
        sentences.append(_TEXT["no_findings"][lang])
    return " ".join(sentences + _ending(lang, synthetic))


def triage_rationale(
    probability: float,
    positive: bool,
    top_contributions: Sequence[tuple[str, float]],
    news2_total: int | None,
    band: str | None,
    lang: Language = "en",
    *,
    synthetic: bool = False,
    limit: int = 3,
    news2_complete: bool = True,
    deteriorating_hours: float | None = None,
) -> str:
    """Explain a triage result in a few sentences.

    Args:
        probability: calibrated risk of deterioration.
        positive: the risk is at or above the model's alert threshold.
        top_contributions: ``(field, contribution to the logit)``; only those that raised the risk
            (positive contributions) are named, largest first, at most ``limit``.
        news2_total: NEWS2 total, or ``None`` when it could not be computed.
        band: NEWS2 band (``low``, ``low-medium``, ``medium``, ``high``) or ``None``.
        lang: ``en``, ``fr`` or ``ar``.
        synthetic: add the sentence saying the model was trained on synthetic data.
        limit: most contributors named.
        news2_complete: every NEWS2 sign was measured; otherwise the total is named as a lower bound.
        deteriorating_hours: the hours the patient's deteriorating series covers (``None``: not
            deteriorating, or a first observation).
    """
    p = format_probability(probability, lang)
    sentences = [_TEXT["risk_high" if positive else "risk_low"][lang].format(p=p)]
    raising = sorted((c for c in top_contributions if c[1] > 0), key=lambda c: -c[1])[:limit]
    if raising:
        names = [VITAL_DISPLAY.get(field, {}).get(lang, field.replace("_", " ")) for field, _ in raising]
        sentences.append(_TEXT["contributors"][lang].format(items=_LIST_SEPARATOR[lang].join(names)))
    if news2_total is not None and band is not None:
        band_text = NEWS2_BAND_DISPLAY.get(band, {}).get(lang, band)
        key = "news2" if news2_complete else "news2_partial"
        sentences.append(_TEXT[key][lang].format(total=news2_total, band=band_text))
    else:
        sentences.append(_TEXT["news2_missing"][lang])
    if deteriorating_hours is not None:
        hours = f"{deteriorating_hours:g}"
        sentences.append(
            _TEXT["deteriorating"][lang].format(hours=hours.replace(".", ",") if lang == "fr" else hours)
        )
    return " ".join(sentences + _ending(lang, synthetic))
