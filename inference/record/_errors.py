"""Errors of the patient record: one root, a handful of children callers map to HTTP statuses."""

from __future__ import annotations

from inference.errors import InferenceError


class RecordError(InferenceError):
    """Root of every error raised by :mod:`inference.record`.

    Messages never carry a patient's name, identifier or birth date: they may end up in logs.
    """


class RecordUnavailable(RecordError):
    """The record's database cannot be reached or opened (no server at the address, credentials
    refused, a database file that cannot be created): nothing was read or changed.

    The message names the database (without its password or query) and the driver's reason, which an
    operator needs and which holds no patient data (it is raised before any statement runs).
    """


class NotFound(RecordError, LookupError):
    """The result, patient or resource asked for is not in the record."""


class Conflict(RecordError):
    """The data contradicts what the record already holds (e.g. a study UID filed under another patient).

    Attributes:
        code: The API error code (``conflict``, or ``resend_conflict`` for :class:`ResendConflict`).
        study_id: The record's id of the filed study the data collided with (its ``ImagingStudy`` id), when
            there is one: the refusal is audited on it, so that study's facility sees the attempt.
    """

    code = "conflict"

    def __init__(self, message: str, *, study_id: str | None = None) -> None:
        super().__init__(message)
        self.study_id = study_id


class ResendConflict(Conflict):
    """UIDs already filed arrive from another facility or with other pixels: not a resend (HTTP 409)."""

    code = "resend_conflict"


class IdempotencyKeyReused(Conflict):
    """An ``Idempotency-Key`` the sender already used for a request with other content (HTTP 409)."""

    code = "idempotency_key_reused"


class InvalidFeedback(RecordError, ValueError):
    """A reader's feedback names a finding the result does not have, or an unknown verdict."""


class InvalidSearch(RecordError, ValueError):
    """A FHIR search names an unsupported resource type or parameter, or a malformed value."""


class InvalidData(RecordError, ValueError):
    """A value the record cannot hold (too long for its column once normalised, a NUL character, a number
    out of range: PostgreSQL's SQLSTATE class 22): the input is at fault, and sending it again fails
    again.

    Attributes:
        code: The API error code every entry point reports it under (``invalid_value``).
    """

    code = "invalid_value"
