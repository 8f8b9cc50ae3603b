"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017).

Scoring follows the RCP chart exactly. The chart is written for whole numbers (temperature to one
decimal), so a value between two rows is first rounded to the chart's resolution, half up:
respiratory rate, SpO2, systolic pressure and heart rate to integers (RR 20.5 → 21 → 2 points),
temperature to one decimal (36.05 → 36.1 → 0 points). Rounding uses the value's shortest decimal
form, so 36.05 rounds as written, not as its binary approximation 36.04999….

When some parameters were not measured, the score of the measured ones is still reported: every
subscore is non-negative, so the known part is a lower bound of the full score, and its band is the
least band the patient can be in. An incomplete score is never rounded up, never imputed and always
says which parameters it lacks (``complete``, ``missing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal

from inference.triage._vitals import VitalSigns

Band = Literal["low", "low-medium", "medium", "high"]

NEWS2_FIELDS: Final[tuple[str, ...]] = (
    "respiratory_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "temperature",
)
"""The request fields NEWS2 needs, in the order of the subscores (``spo2_scale`` defaults to 1)."""


@dataclass(frozen=True, slots=True)
class News2:
    """A NEWS2 score.

    Attributes:
        total: Aggregate score of the measured parameters, 0 to 20; a lower bound of the full score when
            ``complete`` is false.
        subscores: Points per measured parameter, keyed by the request's field names (see
            ``NEWS2_FIELDS``); an unmeasured parameter has no entry.
        band: Clinical risk of the measured part: ``low`` (0–4), ``low-medium`` (a single parameter
            scoring 3 with a total of 4 or less), ``medium`` (5–6) or ``high`` (7 or more).
        complete: Every NEWS2 parameter was measured.
        missing: The NEWS2 parameters not measured, in the order of ``NEWS2_FIELDS``.
        red_score: Some measured parameter scores 3 (the RCP "red score": an urgent ward-based response).
    """

    total: int
    subscores: dict[str, int]
    band: Band
    complete: bool = True
    missing: tuple[str, ...] = ()
    red_score: bool = False

    def as_dict(self) -> dict[str, object]:
        """The JSON form of the contract (``total``, ``subscores``, ``band``, ``complete``, ...)."""
        return {
            "total": self.total,
            "subscores": dict(self.subscores),
            "band": self.band,
            "complete": self.complete,
            "missing": list(self.missing),
            "red_score": self.red_score,
        }


def _round(value: float, places: int) -> float:
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def score_respiratory_rate(rr: float) -> int:
    """Points for a respiratory rate in breaths/min."""
    r = _round(rr, 0)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def score_spo2(spo2: float, *, scale: int, on_oxygen: bool) -> int:
    """Points for SpO2 (%) on scale 1 (default) or scale 2 (target 88–92 %, hypercapnic failure).

    On scale 2 a saturation of 93 % or more scores 0 on air but rises with saturation on oxygen,
    because over-oxygenation is harmful in these patients.
    """
    s = _round(spo2, 0)
    if scale == 1:
        if s <= 91:
            return 3
        if s <= 93:
            return 2
        if s <= 95:
            return 1
        return 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def score_on_oxygen(on_oxygen: bool) -> int:
    """Points for breathing supplemental oxygen (2) rather than air (0)."""
    return 2 if on_oxygen else 0


def score_systolic_bp(sbp: float) -> int:
    """Points for a systolic blood pressure in mmHg."""
    s = _round(sbp, 0)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def score_heart_rate(hr: float) -> int:
    """Points for a pulse in beats/min."""
    h = _round(hr, 0)
    if h <= 40:
        return 3
    if h <= 50:
        return 1
    if h <= 90:
        return 0
    if h <= 110:
        return 1
    if h <= 130:
        return 2
    return 3


def score_consciousness(level: str) -> int:
    """Points for an ACVPU level: alert 0, anything else (new confusion, voice, pain, unresponsive) 3."""
    return 0 if level == "A" else 3


def score_temperature(temp: float) -> int:
    """Points for a temperature in °C."""
    t = _round(temp, 1)
    if t <= 35.0:
        return 3
    if t <= 36.0:
        return 1
    if t <= 38.0:
        return 0
    if t <= 39.0:
        return 1
    return 2


def news2_band(total: int, subscores: dict[str, int]) -> Band:
    """The RCP clinical-risk band of an aggregate score and its subscores."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if any(points == 3 for points in subscores.values()):
        return "low-medium"
    return "low"


def missing_for_news2(v: VitalSigns) -> list[str]:
    """Fields NEWS2 needs that are not measured, in the order of ``NEWS2_FIELDS`` (empty when complete)."""
    return [name for name in NEWS2_FIELDS if getattr(v, name) is None]


def compute_news2(v: VitalSigns) -> News2:
    """NEWS2 of one observation: the full score, or the known part when parameters are missing.

    ``spo2_scale`` 2 with ``on_oxygen`` not measured scores SpO2 as on air: the lower of the two
    possible points, so the total stays a lower bound.
    """
    subscores: dict[str, int] = {}
    if v.respiratory_rate is not None:
        subscores["respiratory_rate"] = score_respiratory_rate(v.respiratory_rate)
    if v.spo2 is not None:
        subscores["spo2"] = score_spo2(v.spo2, scale=v.spo2_scale, on_oxygen=bool(v.on_oxygen))
    if v.on_oxygen is not None:
        subscores["on_oxygen"] = score_on_oxygen(v.on_oxygen)
    if v.systolic_bp is not None:
        subscores["systolic_bp"] = score_systolic_bp(v.systolic_bp)
    if v.heart_rate is not None:
        subscores["heart_rate"] = score_heart_rate(v.heart_rate)
    if v.consciousness is not None:
        subscores["consciousness"] = score_consciousness(v.consciousness)
    if v.temperature is not None:
        subscores["temperature"] = score_temperature(v.temperature)
    missing = tuple(missing_for_news2(v))
    total = sum(subscores.values())
    return News2(
        total=total,
        subscores=subscores,
        band=news2_band(total, subscores),
        complete=not missing,
        missing=missing,
        red_score=any(points == 3 for points in subscores.values()),
    )
