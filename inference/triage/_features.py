"""Vital signs → the triage model's inputs (the ONNX input contract in ``docs/internals.md``)."""

from __future__ import annotations

from collections.abc import Sequence
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

CONSCIOUSNESS_CODES: Final[dict[str, int]] = {level: i for i, level in enumerate(CONSCIOUSNESS_LEVELS)}


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
