"""Vital signs → the triage model's inputs (the ONNX input contract in ``docs/internals.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

import numpy as np
from numpy.typing import NDArray

from inference.triage._vitals import CONSCIOUSNESS_LEVELS, VitalSigns

FEATURES: Final[tuple[str, ...]] = (
    "respiratory_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "diastolic_bp",
    "heart_rate",
    "temperature",
    "consciousness",
)
"""Model input columns, in order. Values are raw contract units; ``on_oxygen`` is 0/1 and
``consciousness`` is encoded A=0, C=1, V=2, P=3, U=4."""

REFERENCE: Final[dict[str, float]] = {
    "respiratory_rate": 16.0,
    "spo2": 98.0,
    "on_oxygen": 0.0,
    "systolic_bp": 120.0,
    "diastolic_bp": 75.0,
    "heart_rate": 70.0,
    "temperature": 37.0,
    "consciousness": 0.0,
}
"""The normal point of each sign (raw units; codes for categorical ones), where its contribution is 0.

Continuous signs: inside the NEWS2 (RCP 2017) zero-scoring range (RR 12–20, SpO2 >= 96 on scale 1,
systolic 111–219, pulse 51–90, temperature 36.1–38.0) at a typical adult value; diastolic pressure has no
NEWS2 row and uses a typical adult value. Categorical: on air, alert."""

NORMAL_RANGES: Final[dict[str, tuple[float, float]]] = {
    "respiratory_rate": (12.0, 20.0),
    "spo2": (94.0, 100.0),
    "systolic_bp": (100.0, 150.0),
    "diastolic_bp": (60.0, 95.0),
    "heart_rate": (50.0, 100.0),
    "temperature": (36.0, 38.0),
}
"""Where a trained model may place a continuous sign's normal point (its lowest-risk value): within the
usual adult normal range (for the NEWS2 rows, the zero-scoring range widened by a point at the edges).
The point a model learned is exported as ``dxassist.reference``; :data:`REFERENCE` is its start."""

CONSCIOUSNESS_CODES: Final[dict[str, int]] = {level: i for i, level in enumerate(CONSCIOUSNESS_LEVELS)}


def model_inputs(v: VitalSigns) -> tuple[VitalSigns, tuple[str, ...]]:
    """The signs the triage model is given, and the measured ones it is not (in :data:`FEATURES` order).

    SpO2 charted on NEWS2 Scale 2 (hypercapnic respiratory failure, prescribed target 88–92 %) is
    withheld: the model has no ``spo2_scale`` input, so it reads every saturation on Scale 1, where 88 %
    is alarming, while on Scale 2 it is the target. It scores such a patient as if SpO2 were not measured
    (contribution 0); NEWS2 still scores SpO2 on Scale 2.
    """
    if v.spo2 is not None and v.spo2_scale == 2:
        return replace(v, spo2=None), ("spo2",)
    return v, ()


def _encoded(v: VitalSigns, name: str) -> float | None:
    value = getattr(v, name)
    if value is None:
        return None
    if name == "consciousness":
        return float(CONSCIOUSNESS_CODES[value])
    return float(value)


def encode_features(v: VitalSigns) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Encode one observation.

    Returns:
        ``(values, present)``, both float32 of shape ``[len(FEATURES)]``: a missing feature has value 0
        and present 0, a measured one its raw value and present 1.
    """
    values = np.zeros(len(FEATURES), dtype=np.float32)
    present = np.zeros(len(FEATURES), dtype=np.float32)
    for j, name in enumerate(FEATURES):
        encoded = _encoded(v, name)
        if encoded is not None:
            values[j] = encoded
            present[j] = 1.0
    return values, present


def encode_batch(vitals: Sequence[VitalSigns]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Encode several observations: ``(values, present)``, float32 of shape ``[N, len(FEATURES)]``."""
    values = np.zeros((len(vitals), len(FEATURES)), dtype=np.float32)
    present = np.zeros((len(vitals), len(FEATURES)), dtype=np.float32)
    for i, v in enumerate(vitals):
        values[i], present[i] = encode_features(v)
    return values, present
