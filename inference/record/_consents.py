"""Patient consent: AI processing, national sharing, sharing between facilities."""

from __future__ import annotations

from sqlalchemy.orm import Session

from inference.record import _consent, _training_inputs
from inference.record._consent import ConsentState
from inference.record._database import Database
from inference.record._errors import NotFound
from inference.record._models import Patient
from inference.record._types import utcnow


class Consents:
    """A patient's recorded choices, read and replaced."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, *, patient_id: str) -> ConsentState:
        """A patient's consent (both purposes allowed when nothing was recorded).

        Raises:
            NotFound: No patient has this id.
        """
        with self._db.sessions() as session:
            if session.get(Patient, patient_id) is None:
                raise NotFound("No patient has this id.")
            return _consent.state(session, patient_id)

    def for_identifier(self, *, identifier: str, issuer: str | None) -> ConsentState | None:
        """The consent of the patient known by ``(identifier, issuer)``; None for an unknown patient."""
        with self._db.sessions() as session:
            return _consent.by_identifier(session, identifier, issuer)

    def set(
        self,
        *,
        patient_id: str,
        ai_processing: bool,
        national_sharing: bool,
        by: str,
        role: str,
        facility_sharing: bool | None = None,
    ) -> ConsentState:
        """Record a patient's choices (``True``: allowed), replacing earlier ones.

        ``facility_sharing`` None keeps the recorded consent to sharing between facilities.

        Raises:
            NotFound: No patient has this id.
        """

        def work(session: Session) -> ConsentState:
            if session.get(Patient, patient_id) is None:
                raise NotFound("No patient has this id.")
            if not ai_processing:  # an objection ends the keeping of their images for retraining
                _training_inputs.forget(session, patient_id)
            return _consent.write(
                session,
                patient_id=patient_id,
                ai_processing=ai_processing,
                national_sharing=national_sharing,
                facility_sharing=facility_sharing,
                by=by,
                role=role,
                at=utcnow(),
            )

        return self._db.write(work)

    def ai_processing_allowed(self, *, identifier: str, issuer: str | None) -> bool:
        """False when the patient ``(identifier, issuer)`` objected to AI processing."""
        found = self.for_identifier(identifier=identifier, issuer=issuer)
        return found is None or found.ai_processing

    def sharing_allowed(self, *, patient_id: str) -> bool:
        """False when the patient objected to sharing with the national record or does not exist.

        The outbox calls this before queueing anything for an external destination.
        """
        with self._db.sessions() as session:
            if session.get(Patient, patient_id) is None:
                return False
            return _consent.state(session, patient_id).national_sharing
