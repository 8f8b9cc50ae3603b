"""Finding codes of the imaging model: SNOMED CT concepts and display names in English, French, Arabic."""

from __future__ import annotations

from typing import Final, Literal

Language = Literal["en", "fr", "ar"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "fr", "ar")

SNOMED_CT: Final = "http://snomed.info/sct"

FINDINGS: Final[tuple[str, ...]] = (
    "nodule",
    "consolidation",
    "pleural_effusion",
    "pneumothorax",
    "cardiomegaly",
)
"""Finding codes of ``cxr-findings``, in the model's output order."""

FINDING_CODES: Final[dict[str, tuple[str, str, str]]] = {
    # (system, code, display): SNOMED CT disorder concepts with their preferred terms.
    "nodule": (SNOMED_CT, "786838002", "Nodule of lung"),
    "consolidation": (SNOMED_CT, "95436008", "Lung consolidation"),
    "pleural_effusion": (SNOMED_CT, "60046008", "Pleural effusion"),
    "pneumothorax": (SNOMED_CT, "36118008", "Pneumothorax"),
    "cardiomegaly": (SNOMED_CT, "8186001", "Cardiomegaly"),
}

FINDING_DISPLAY: Final[dict[str, dict[Language, str]]] = {
    "nodule": {"en": "lung nodule", "fr": "nodule pulmonaire", "ar": "عقيدة رئوية"},
    "consolidation": {"en": "lung consolidation", "fr": "condensation pulmonaire", "ar": "تكثّف رئوي"},
    "pleural_effusion": {"en": "pleural effusion", "fr": "épanchement pleural", "ar": "انصباب جنبي"},
    "pneumothorax": {"en": "pneumothorax", "fr": "pneumothorax", "ar": "استرواح الصدر"},
    "cardiomegaly": {"en": "cardiomegaly", "fr": "cardiomégalie", "ar": "تضخّم القلب"},
}
"""Lower-case display names for running text; capitalise for a heading."""

VITAL_DISPLAY: Final[dict[str, dict[Language, str]]] = {
    "respiratory_rate": {"en": "respiratory rate", "fr": "fréquence respiratoire", "ar": "معدل التنفس"},
    "spo2": {"en": "oxygen saturation", "fr": "saturation en oxygène", "ar": "تشبّع الأكسجين"},
    "on_oxygen": {"en": "supplemental oxygen", "fr": "oxygénothérapie", "ar": "الأكسجين الإضافي"},
    "systolic_bp": {
        "en": "systolic blood pressure",
        "fr": "pression artérielle systolique",
        "ar": "ضغط الدم الانقباضي",
    },
    "diastolic_bp": {
        "en": "diastolic blood pressure",
        "fr": "pression artérielle diastolique",
        "ar": "ضغط الدم الانبساطي",
    },
    "heart_rate": {"en": "heart rate", "fr": "fréquence cardiaque", "ar": "معدل ضربات القلب"},
    "temperature": {"en": "temperature", "fr": "température", "ar": "درجة الحرارة"},
    "consciousness": {"en": "level of consciousness", "fr": "niveau de conscience", "ar": "مستوى الوعي"},
}

NEWS2_BAND_DISPLAY: Final[dict[str, dict[Language, str]]] = {
    "low": {"en": "low", "fr": "faible", "ar": "منخفض"},
    "low-medium": {"en": "low-medium", "fr": "faible à moyen", "ar": "منخفض إلى متوسط"},
    "medium": {"en": "medium", "fr": "moyen", "ar": "متوسط"},
    "high": {"en": "high", "fr": "élevé", "ar": "مرتفع"},
}


def finding_display(code: str, lang: Language = "en") -> str:
    """Display name of a finding in ``lang`` (the code itself, spaced, for a finding not listed here)."""
    names = FINDING_DISPLAY.get(code)
    return names[lang] if names is not None else code.replace("_", " ")
