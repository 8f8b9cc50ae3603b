"""Who a sender files data for: the patient's identity (issuer normalised, the sender's default issuer)
and the facility that will own the result (the sender's, never one named in the body by someone else)."""

from __future__ import annotations

from dataclasses import replace

from inference.record import InvalidData, PatientIn
from inference.security import Forbidden, Role
from inference.services._context import Actor, Context

# The record's issuer column (``Patient.issuer``); the issuer is checked once upper-cased, as stored.
MAX_ISSUER_CHARS = 128

_NO_FACILITY = (
    "A result belongs to the facility that sends it, and this token names no facility. Use a token issued "
    "with --facility (or, for a DICOM node, register it in DXASSIST_DIMSE_NODES)."
)
_OTHER_FACILITY = (
    "The request names another facility than the one your token is bound to; data is filed only for the "
    "sender's own facility."
)


def sender_facility(actor: Actor, named: str | None = None) -> str:
    """The facility that owns what ``actor`` sends.

    An ``admin`` token without a facility may file for the facility a request names (operator tools);
    any other caller files for its own facility only.

    Raises:
        Forbidden: The token names no facility (and the caller is no admin naming one), or the request
            names another facility than the token's.
    """
    principal = actor.principal
    if principal.facility is None:
        if principal.role == Role.ADMIN and named:
            return named
        raise Forbidden(_NO_FACILITY, code="facility_required")
    if named is not None and named != principal.facility:
        raise Forbidden(_OTHER_FACILITY, code="facility_mismatch")
    return principal.facility


def default_issuer(ctx: Context, facility: str) -> str | None:
    """The issuer a facility's senders mean when they name none (``DXASSIST_FACILITY_ISSUERS``), else the
    server-wide ``DXASSIST_DEFAULT_ISSUER``, else None."""
    settings = ctx.settings
    return settings.record.facility_issuers.get(facility) or settings.record.default_issuer


def identify(ctx: Context, actor: Actor, patient: PatientIn) -> PatientIn:
    """The patient as the record keys it, sent by ``actor``'s facility.

    The issuer is trimmed and upper-cased (the record does the same); a missing one becomes the sender
    facility's default issuer, so ``IPP-1`` sent without issuer by a facility whose identifiers are issued
    by ``CHU-NORD`` is the same patient (and the same consent) as ``IPP-1`` of ``chu-nord``. An issuer
    that is another facility's own names that facility as the patient's home (:func:`issuing_facility`).

    Raises:
        Forbidden: See :func:`sender_facility`.
        InvalidData: The issuer is longer than :data:`MAX_ISSUER_CHARS` once upper-cased (``ß`` becomes
            ``SS``, ``ﬃ`` becomes ``FFI``): refused, never truncated (two issuers would become one).
    """
    facility = sender_facility(actor, patient.facility)
    issuer = ((patient.issuer or "").strip() or default_issuer(ctx, facility) or "").upper()
    if len(issuer) > MAX_ISSUER_CHARS:
        raise InvalidData(
            f"The issuer of the patient identifier is longer than {MAX_ISSUER_CHARS} characters once "
            "upper-cased (letters such as 'ß' become two); send an issuer of at most "
            f"{MAX_ISSUER_CHARS} characters in upper case."
        )
    return replace(
        patient, issuer=issuer, facility=facility, home_facility=issuing_facility(ctx, issuer, facility)
    )


def issuing_facility(ctx: Context, issuer: str, sender: str) -> str | None:
    """The facility whose own assigning authority is ``issuer`` (``DXASSIST_FACILITY_ISSUERS``), when it
    is another one than ``sender``: a patient of that issuer not on file yet is that facility's (its first
    facility), not the sender's. None when the issuer is the sender's, nobody's, several facilities', or
    the server-wide ``DXASSIST_DEFAULT_ISSUER`` (shared by every facility without an issuer of its own).
    """
    record = ctx.settings.record
    if issuer == (record.default_issuer or "").strip().upper():
        return None
    owners = {facility for facility, own in record.facility_issuers.items() if own.strip().upper() == issuer}
    if len(owners) != 1 or sender in owners:
        return None
    return owners.pop()
