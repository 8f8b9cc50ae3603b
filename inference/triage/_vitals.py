"""One set of vital signs in fixed units, checked for plausibility when it is made."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from inference.triage._errors import VitalsRejected

CONSCIOUSNESS_LEVELS: Final[tuple[str, ...]] = ("A", "C", "V", "P", "U")
"""ACVPU in order of worsening: Alert, new Confusion, responds to Voice, to Pain, Unresponsive."""

# Plausibility ranges (inclusive) in contract units. They reject typing errors and unit mix-ups
# (a temperature in Fahrenheit, a rate per 10 s), not abnormal physiology: a NEWS2 of 20 is legitimate.
PLAUSIBLE_RANGES: Final[dict[str, tuple[float, float, str]]] = {
    "respiratory_rate": (0.0, 80.0, "breaths/min"),
    "spo2": (50.0, 100.0, "%"),
    "systolic_bp": (30.0, 300.0, "mmHg"),
    "diastolic_bp": (10.0, 200.0, "mmHg"),
    "heart_rate": (10.0, 300.0, "beats/min"),
    "temperature": (25.0, 45.0, "°C"),
}

VITAL_FIELDS: Final[tuple[str, ...]] = (
    "respiratory_rate",
    "spo2",
    "spo2_scale",
    "on_oxygen",
    "systolic_bp",
    "diastolic_bp",
    "heart_rate",
    "temperature",
    "consciousness",
)

MEASURED_FIELDS: Final[tuple[str, ...]] = tuple(name for name in VITAL_FIELDS if name != "spo2_scale")
"""The fields that are observations of the patient (``spo2_scale`` says how to read SpO2, nothing more)."""


def _check_number(name: str, value: object) -> float | None:
    if value is None:
        return None
    # bool is an int in Python, but `true` for a heart rate is a client bug, not 1 beat/min.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VitalsRejected(
            "invalid_type",
            f"Field '{name}' must be a number or null; got a {type(value).__name__}.",
            field=name,
        )
    number = float(value)
    lo, hi, unit = PLAUSIBLE_RANGES[name]
    if not math.isfinite(number):
        raise VitalsRejected("invalid_type", f"Field '{name}' must be a finite number or null.", field=name)
    if not lo <= number <= hi:
        raise VitalsRejected(
            "implausible_value",
            f"Field '{name}' is outside the plausible range; accepted values are {lo:g} to {hi:g} {unit}.",
            field=name,
        )
    return number


@dataclass(frozen=True, slots=True)
class VitalSigns:
    """Vital signs of one observation; every field is optional.

    Units are fixed: breaths/min, %, mmHg, beats/min, °C. ``spo2_scale`` selects the NEWS2 SpO2 scale
    (2 for patients with hypercapnic respiratory failure and a prescribed target of 88–92 %).
    ``consciousness`` is one ACVPU letter. Values are checked when the object is made and
    :class:`~inference.triage.VitalsRejected` is raised for anything implausible, so a ``VitalSigns``
    in hand is always usable.
    """

    respiratory_rate: float | None = None
    spo2: float | None = None
    spo2_scale: int = 1
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    diastolic_bp: float | None = None
    heart_rate: float | None = None
    temperature: float | None = None
    consciousness: str | None = None

    def __post_init__(self) -> None:
        for name in PLAUSIBLE_RANGES:
            object.__setattr__(self, name, _check_number(name, getattr(self, name)))
        if isinstance(self.spo2_scale, bool) or self.spo2_scale not in (1, 2):
            raise VitalsRejected(
                "invalid_value",
                "Field 'spo2_scale' must be 1 or 2 (the NEWS2 SpO2 scales).",
                field="spo2_scale",
            )
        object.__setattr__(self, "spo2_scale", int(self.spo2_scale))
        if self.on_oxygen is not None and not isinstance(self.on_oxygen, bool):
            raise VitalsRejected(
                "invalid_type", "Field 'on_oxygen' must be true, false or null.", field="on_oxygen"
            )
        if self.consciousness is not None and self.consciousness not in CONSCIOUSNESS_LEVELS:
            raise VitalsRejected(
                "invalid_value",
                "Field 'consciousness' must be one of A, C, V, P, U (ACVPU) or null.",
                field="consciousness",
            )
        if (
            self.systolic_bp is not None
            and self.diastolic_bp is not None
            and not self.diastolic_bp < self.systolic_bp
        ):
            raise VitalsRejected(
                "inconsistent_values",
                "Field 'diastolic_bp' must be lower than 'systolic_bp'; check that the two were not swapped.",
                field="diastolic_bp",
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> VitalSigns:
        """Build from a decoded JSON request body.

        Only the vital-sign keys are read (``patient``, ``observed_at`` and the like belong to the
        caller); a missing key or ``null`` means not measured; ``spo2_scale`` defaults to 1.

        Raises:
            VitalsRejected: A value has the wrong type or is implausible.
        """
        kwargs = {name: data[name] for name in VITAL_FIELDS if name in data and data[name] is not None}
        return cls(**kwargs)

    def require_measured(self) -> None:
        """Refuse to score an observation in which no sign was measured.

        Raises:
            VitalsRejected: ``no_vital_signs``: nothing measured is not a low risk, and a score made of
                the model's intercept alone would read as one.
        """
        if all(getattr(self, name) is None for name in MEASURED_FIELDS):
            raise VitalsRejected(
                "no_vital_signs",
                f"The request has no vital sign; send at least one of {', '.join(MEASURED_FIELDS)}.",
                field=MEASURED_FIELDS[0],
            )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``None`` where not measured)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
