"""Errors raised while reading vital signs.

The API maps :class:`VitalsRejected` to a 4xx answer (400 for a malformed value, 422 for a well-formed
value outside the plausible range); the messages name the field and what is accepted, never the patient.
"""

from __future__ import annotations

from inference.errors import InferenceError


class TriageError(InferenceError):
    """Root of the errors raised by :mod:`inference.triage`."""


class VitalsRejected(TriageError, ValueError):
    """A vital sign is malformed, implausible or inconsistent with another one.

    Attributes:
        code: A stable machine-readable reason: ``invalid_type`` (wrong JSON type or not a finite number),
            ``invalid_value`` (not one of the accepted codes), ``implausible_value`` (outside the accepted
            range), ``inconsistent_values`` (e.g. diastolic not below systolic pressure),
            ``no_vital_signs`` (nothing measured at all) or ``paediatric_patient`` (a child when measured).
        message: A full sentence naming the field and the accepted values; it never contains patient data.
        field: The request field at fault.
    """

    def __init__(self, code: str, message: str, *, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
