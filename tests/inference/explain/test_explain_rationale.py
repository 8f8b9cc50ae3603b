"""Rationales in English, French and Arabic; language choice from Accept-Language."""

from __future__ import annotations

import pytest

from inference.explain import choose_language, imaging_rationale, triage_rationale
from inference.vocabulary import LANGUAGES, Language, finding_display

REMINDER = {
    "en": "This is an AI suggestion and must be confirmed by a clinician.",
    "fr": "Il s'agit d'une suggestion produite par une IA, qui doit être confirmée par un clinicien.",
    "ar": "هذا اقتراح صادر عن نظام ذكاء اصطناعي، ويجب أن يؤكده طبيب.",
}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        ("en;q=0.5, ar;q=0.9", "ar"),
        ("de-DE, fr;q=0.3", "fr"),
        ("de, it", "en"),
        ("ar;q=0, fr;q=0.1", "fr"),
        ("AR-MA", "ar"),
        ("*;q=0.5, fr;q=0.4", "en"),
        ("fr;q=abc, ar;q=0.2", "ar"),
        ("en;q=0.8, fr;q=0.8", "en"),
    ],
)
def test_language_follows_accept_language(header: str | None, expected: str) -> None:
    assert choose_language(header) == expected


FINDINGS_RESULT = [
    ("nodule", 0.12, False),
    ("pleural_effusion", 0.64, True),
    ("pneumothorax", 0.91, True),
]


def test_imaging_rationale_in_english_names_positive_findings_most_likely_first() -> None:
    text = imaging_rationale(FINDINGS_RESULT, "en")
    assert text.startswith(
        "Findings suggested by the model: pneumothorax (probability 91%), pleural effusion"
    )
    assert "nodule" not in text
    assert text.endswith(REMINDER["en"])


def test_imaging_rationale_in_french_and_arabic() -> None:
    fr = imaging_rationale(FINDINGS_RESULT, "fr")
    assert "pneumothorax (probabilité 91\u00a0%)" in fr and "épanchement pleural" in fr
    assert fr.endswith(REMINDER["fr"])
    ar = imaging_rationale(FINDINGS_RESULT, "ar")
    assert "استرواح الصدر (احتمال 91٪)" in ar and "انصباب جنبي" in ar
    assert ar.endswith(REMINDER["ar"])


def test_imaging_rationale_without_positive_findings_says_so_and_flags_synthetic_models() -> None:
    text = imaging_rationale([("nodule", 0.2, False), ("cardiomegaly", 0.004, False)], "en", synthetic=True)
    assert "No finding reached its decision threshold" in text and "lung nodule (20%)" in text
    assert "synthetic data" in text
    assert text.endswith(REMINDER["en"])


@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
def test_triage_rationale_names_what_raised_the_risk(lang: str) -> None:
    text = triage_rationale(
        0.72,
        True,
        [
            ("heart_rate", 1.8),
            ("spo2", 1.6),
            ("respiratory_rate", 1.25),
            ("temperature", 0.8),
            ("systolic_bp", -0.2),
        ],
        9,
        "high",
        lang,  # type: ignore[arg-type]
    )
    expected = {
        "en": [
            "72%",
            "above its alert threshold",
            "heart rate, oxygen saturation, respiratory rate",
            "NEWS2 score 9",
        ],
        "fr": [
            "72\u00a0%",
            "au-dessus",
            "fréquence cardiaque, saturation en oxygène, fréquence respiratoire",
            "élevé",
        ],
        "ar": ["72٪", "أعلى من عتبة التنبيه", "معدل ضربات القلب، تشبّع الأكسجين، معدل التنفس", "مرتفع"],
    }[lang]
    for fragment in expected:
        assert fragment in text
    assert {"en": "temperature", "fr": "température", "ar": "درجة الحرارة"}[lang] not in text  # only top 3
    assert text.endswith(REMINDER[lang])


def test_triage_rationale_without_news2_says_why() -> None:
    text = triage_rationale(0.05, False, [("heart_rate", -0.1)], None, None, "en")
    assert "below its alert threshold" in text
    assert "NEWS2 was not computed because some vital signs are missing." in text
    assert "measurements that raised" not in text


@pytest.mark.parametrize(
    ("lang", "partial", "trend"),
    [
        (
            "en",
            "NEWS2 of the measured vital signs: at least 12",
            "observations over the last 6 h show deterioration",
        ),
        ("fr", "au moins 12", "sur les dernières 6\u00a0h montrent une dégradation"),
        ("ar", "12 على الأقل", "آخر 6 ساعة"),
    ],
)
def test_triage_rationale_says_an_incomplete_news2_is_a_lower_bound_and_names_the_trend(
    lang: str, partial: str, trend: str
) -> None:
    text = triage_rationale(
        0.8,
        True,
        [("respiratory_rate", 2.1)],
        12,
        "high",
        lang,
        news2_complete=False,
        deteriorating_hours=6.0,
    )
    assert partial in text and trend in text
    steady = triage_rationale(0.8, True, [("respiratory_rate", 2.1)], 12, "high", lang)
    assert partial not in steady and trend not in steady


@pytest.mark.parametrize(
    ("lang", "bound", "claim"),
    [
        ("en", "band at least low", "(low clinical risk)"),
        ("fr", "au moins faible", "(risque clinique faible)"),
        ("ar", "منخفض على الأقل", "(خطر سريري منخفض)"),
    ],
)
def test_an_incomplete_news2_gives_its_band_as_a_lower_bound_not_as_the_risk(
    lang: Language, bound: str, claim: str
) -> None:
    # Heart rate alone, normal: the measured part scores 0, "low", but the unmeasured signs may score 3 each.
    text = triage_rationale(0.05, False, [("heart_rate", -0.1)], 0, "low", lang, news2_complete=False)
    assert bound in text and claim not in text
    complete = triage_rationale(0.05, False, [("heart_rate", -0.1)], 0, "low", lang)
    assert claim in complete


def test_a_not_assessable_rationale_names_no_finding_in_any_language() -> None:
    findings = [("pneumothorax", 0.99, False), ("nodule", 0.97, False)]
    starts = {"en": "Not assessable", "fr": "Non évaluable", "ar": "غير قابلة للتقييم"}
    for lang in LANGUAGES:
        text = imaging_rationale(findings, lang, synthetic=True, assessable=False)
        assert text.startswith(starts[lang])
        assert finding_display("pneumothorax", lang) not in text and "99" not in text
        assert imaging_rationale(findings, lang, synthetic=True) != text


@pytest.mark.parametrize(
    ("probability", "lang", "shown"),
    [
        (0.99955, "en", ">99%"),
        (1.0, "en", ">99%"),
        (0.996, "fr", ">99\u00a0%"),
        (0.0, "en", "<1%"),
        (0.004, "en", "<1%"),
        (0.5, "en", "50%"),
        (0.994, "en", "99%"),
    ],
)
def test_a_probability_is_never_shown_as_a_certainty(probability: float, lang: Language, shown: str) -> None:
    # A saturated output (0.9995 on a phantom) read "probability 100%": a certainty no model has.
    text = imaging_rationale([("pleural_effusion", probability, probability >= 0.5)], lang)
    assert shown in text
    assert "100%" not in text and "100\u00a0%" not in text


@pytest.mark.parametrize(
    ("lang", "trend"),
    [
        ("en", "over the last 0.68 h show"),
        ("fr", "sur les dernières 0,68\u00a0h montrent"),
        ("ar", "آخر 0.68 ساعة"),
    ],
)
def test_the_hours_of_a_trend_are_written_with_the_language_s_decimal_sign(lang: str, trend: str) -> None:
    # French wrote "les dernières 0.68 h": a decimal point, and a line could break between number and unit.
    text = triage_rationale(
        0.8, True, [("respiratory_rate", 2.1)], 6, "medium", lang, deteriorating_hours=0.68
    )
    assert trend in text
