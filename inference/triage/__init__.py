"""Vital signs: validation in fixed units, NEWS2 (RCP 2017) and the triage model's feature encoding.

numpy and the standard library only: the server and training share this one implementation of NEWS2.
"""

from inference.triage._errors import TriageError, VitalsRejected
from inference.triage._features import (
    CONSCIOUSNESS_CODES,
    FEATURES,
    NORMAL_RANGES,
    REFERENCE,
    encode_batch,
    encode_features,
    model_inputs,
)
from inference.triage._news2 import (
    NEWS2_FIELDS,
    Band,
    News2,
    compute_news2,
    missing_for_news2,
    news2_band,
    score_consciousness,
    score_heart_rate,
    score_on_oxygen,
    score_respiratory_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)
from inference.triage._trend import SeriesPoint, Trend, compute_trend
from inference.triage._vitals import CONSCIOUSNESS_LEVELS, PLAUSIBLE_RANGES, VITAL_FIELDS, VitalSigns

__all__ = [
    "CONSCIOUSNESS_CODES",
    "CONSCIOUSNESS_LEVELS",
    "FEATURES",
    "NEWS2_FIELDS",
    "NORMAL_RANGES",
    "PLAUSIBLE_RANGES",
    "REFERENCE",
    "VITAL_FIELDS",
    "Band",
    "News2",
    "SeriesPoint",
    "Trend",
    "TriageError",
    "VitalSigns",
    "VitalsRejected",
    "compute_news2",
    "compute_trend",
    "encode_batch",
    "encode_features",
    "missing_for_news2",
    "model_inputs",
    "news2_band",
    "score_consciousness",
    "score_heart_rate",
    "score_on_oxygen",
    "score_respiratory_rate",
    "score_spo2",
    "score_systolic_bp",
    "score_temperature",
]
