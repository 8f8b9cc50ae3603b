"""Patients: who they are in the record, who manages them, and on what ground a caller reads them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from inference.record import _save, _scope
from inference.record._database import Database
from inference.record._inputs import PatientIn
from inference.record._models import IdentityMismatch, Patient, normalise_issuer
from inference.record._types import iso


class Patients:
    """Patient lookups for authorisation, registration before any result, identity mismatches."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def facility(self, *, patient_id: str) -> str | None:
        """The facility managing a patient (``None`` when unknown or unset)."""
        with self._db.sessions() as session:
            return session.scalars(select(Patient.facility).where(Patient.id == patient_id)).first()

    def access_basis(
        self, *, scope: _scope.Scope, patient_id: str, owner: str | None, patient_level: bool = False
    ) -> str | None:
        """The ground on which a caller reads a row (see :mod:`inference.record._scope`); None: refused."""
        with self._db.sessions() as session:
            return _scope.basis(
                session, scope, patient_id=patient_id, owner=owner, patient_level=patient_level
            )

    def find(self, *, identifier: str, issuer: str | None) -> str | None:
        """The id of the patient ``(identifier, issuer)`` (issuer normalised), or None."""
        with self._db.sessions() as session:
            return session.scalars(
                select(Patient.id).where(
                    Patient.identifier == identifier, Patient.issuer == normalise_issuer(issuer)
                )
            ).first()

    def identity_mismatches(self, *, patient_id: str) -> list[dict[str, Any]]:
        """Who sent demographics differing from the record, and which fields (oldest first, no values)."""
        with self._db.sessions() as session:
            rows = session.scalars(
                select(IdentityMismatch)
                .where(IdentityMismatch.patient_id == patient_id)
                .order_by(IdentityMismatch.created, IdentityMismatch.id)
            )
            return [
                {
                    "result_id": row.result_id,
                    "facility": row.facility,
                    "source": row.source,
                    "fields": row.fields.split(","),
                    "created": iso(row.created),
                }
                for row in rows
            ]

    def register(self, *, patient: PatientIn) -> str:
        """The id of the patient ``(identifier, issuer)``, filed now (without any result) when new.

        Lets a consent be recorded before the patient's first study or vital signs arrive.
        """
        _save.validate_patient(patient)
        return self._db.write(lambda session: _save.upsert_patient(session, patient)[0].id)
