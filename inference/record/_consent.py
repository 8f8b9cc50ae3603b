"""Patient consent: objection to AI processing and to sharing with the national record, and consent to
sharing results between facilities.

A patient without a consent row has objected to nothing (the national record is opt-out). An objection
to AI processing stops every new analysis for the patient; an objection to sharing stops every delivery
of their results to external destinations (PACS, national FHIR server). Sharing results between
facilities is opt-in: until the patient's consent is recorded (``facility_sharing``), a facility reads
only its own results of the patient (or, in an emergency, through break-the-glass).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from inference.record._errors import RecordError
from inference.record._models import Consent, Patient, normalise_issuer
from inference.record._types import iso

PERMIT: Final = "permit"
DENY: Final = "deny"


class ConsentObjection(RecordError):
    """The patient objected to what was asked (AI processing); nothing was analysed (HTTP 409).

    Attributes:
        code: ``consent_objection``, the API error code.
    """

    code = "consent_objection"


@dataclass(frozen=True)
class ConsentState:
    """A patient's choices: ``True`` means allowed; ``updated_*`` are None when never set."""

    patient_id: str
    ai_processing: bool = True
    national_sharing: bool = True
    facility_sharing: bool = False
    updated_by: str | None = None
    updated_role: str | None = None
    updated_at: datetime | None = None

    def public(self) -> dict[str, str | None]:
        """The API form: ``permit``/``deny`` per purpose and who set it when."""
        return {
            "patient_id": self.patient_id,
            "ai_processing": PERMIT if self.ai_processing else DENY,
            "national_sharing": PERMIT if self.national_sharing else DENY,
            "facility_sharing": PERMIT if self.facility_sharing else DENY,
            "updated_by": self.updated_by,
            "updated_at": iso(self.updated_at) if self.updated_at is not None else None,
        }


def state(session: Session, patient_id: str) -> ConsentState:
    """The consent of a patient (defaults when none was recorded)."""
    return _state_of(patient_id, session.get(Consent, patient_id))


def _state_of(patient_id: str, row: Any) -> ConsentState:
    """The consent in ``row`` (a ``Consent`` or a row of its columns; None: defaults)."""
    if row is None:
        return ConsentState(patient_id=patient_id)
    return ConsentState(
        patient_id=patient_id,
        ai_processing=row.ai_processing,
        national_sharing=row.national_sharing,
        facility_sharing=bool(row.facility_sharing),
        updated_by=row.updated_by,
        updated_role=row.updated_role,
        updated_at=row.updated_at,
    )


_CONSENTS: Final = cast(Table, Consent.__table__)
_FILED: Final = select(
    _CONSENTS.c.ai_processing,
    _CONSENTS.c.national_sharing,
    _CONSENTS.c.facility_sharing,
    _CONSENTS.c.updated_by,
    _CONSENTS.c.updated_role,
    _CONSENTS.c.updated_at,
).where(_CONSENTS.c.patient_id == bindparam("patient_id"))


def filed_state(session: Session, patient_id: str) -> ConsentState:
    """:func:`state` as the database holds it, in one statement built once: for a transaction that has
    not changed the patient's consent (a change still pending in ``session`` is not seen)."""
    return _state_of(patient_id, session.execute(_FILED, {"patient_id": patient_id}).first())


_PATIENTS: Final = cast(Table, Patient.__table__)
_BY_IDENTIFIER: Final = (
    select(_PATIENTS.c.id, _PATIENTS.c.birth_date, *_FILED.selected_columns)
    .select_from(_PATIENTS.outerjoin(_CONSENTS, _CONSENTS.c.patient_id == _PATIENTS.c.id))
    .where(_PATIENTS.c.identifier == bindparam("identifier"), _PATIENTS.c.issuer == bindparam("issuer"))
)


def by_identifier(session: Session, identifier: str, issuer: str | None) -> ConsentState | None:
    """The consent of the patient known by ``(identifier, issuer)``; None when the patient is unknown."""
    found = with_birth_date(session, identifier, issuer)
    return None if found is None else found[0]


def with_birth_date(
    session: Session, identifier: str, issuer: str | None
) -> tuple[ConsentState, str | None] | None:
    """The consent of the patient known by ``(identifier, issuer)`` and their birth date on file (ISO;
    None when none is); None when the patient is unknown.

    One statement built once (the patient and its consent row, if any, joined): it runs before every
    upload is analysed, and the birth date is what the age checks read beside the sender's."""
    row = session.execute(
        _BY_IDENTIFIER, {"identifier": identifier, "issuer": normalise_issuer(issuer)}
    ).first()
    if row is None:
        return None
    return _state_of(row.id, row if row.ai_processing is not None else None), row.birth_date


def write(
    session: Session,
    *,
    patient_id: str,
    ai_processing: bool,
    national_sharing: bool,
    by: str,
    role: str,
    at: datetime,
    facility_sharing: bool | None = None,
) -> ConsentState:
    """Record a patient's choices, replacing earlier ones (the audit trail keeps the history).

    ``facility_sharing`` None keeps what was recorded (no sharing between facilities when nothing was).
    """
    row = session.get(Consent, patient_id)
    if row is None:
        row = Consent(patient_id=patient_id, facility_sharing=False)
        session.add(row)
    row.ai_processing = ai_processing
    row.national_sharing = national_sharing
    if facility_sharing is not None:
        row.facility_sharing = facility_sharing
    row.updated_by = by
    row.updated_role = role
    row.updated_at = at
    session.flush()
    return state(session, patient_id)
