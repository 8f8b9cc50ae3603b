"""Errors of the patient record: one root, a handful of children callers map to HTTP statuses."""

from __future__ import annotations


class RecordError(Exception):
    """Root of every error raised by :mod:`inference.record`.

    Messages never carry a patient's name, identifier or birth date: they may end up in logs.
    """


class NotFound(RecordError, LookupError):
    """The result, patient or resource asked for is not in the record."""


class Conflict(RecordError):
    """The data contradicts what the record already holds (e.g. a study UID filed under another patient)."""


class InvalidFeedback(RecordError, ValueError):
    """A reader's feedback names a finding the result does not have, or an unknown verdict."""


class InvalidSearch(RecordError, ValueError):
    """A FHIR search names an unsupported resource type or parameter, or a malformed value."""
