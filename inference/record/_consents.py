"""Patient consent: AI processing, national sharing, sharing between facilities."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from inference.record import _audit, _consent, _save, _training_inputs
from inference.record._consent import ConsentState
from inference.record._database import Database
from inference.record._errors import NotFound
from inference.record._inputs import AuditIn, PatientIn
from inference.record._models import Patient
from inference.record._reads import DENIED, Audited, Changed, Target, read_audited, write_audited
from inference.record._scope import Scope
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

    def set_checked(
        self,
        *,
        patient_id: str,
        ai_processing: bool,
        national_sharing: bool,
        by: str,
        role: str,
        scope: Scope,
        audit: AuditIn,
        facility_sharing: bool | None = None,
    ) -> Changed[ConsentState]:
        """:meth:`set`, if the caller may record the patient's choices (the patient's first facility, or
        an admin: sharing and break-the-glass open reading only), the check, the choices and their entry
        in one transaction (:func:`inference.record._reads.write_audited`): ``not_found`` or ``denied``
        (audited, nothing changed; ``readable`` says whether the caller may read the patient), or
        ``success`` with the new state.

        Raises:
            RecordError: The record failed or the audit entry could not be written (nothing changed).
        """

        return write_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Consent",
            resource_id=patient_id,
            locate=lambda session: _patient_target(session, patient_id),
            change=_choices(
                ai_processing=ai_processing,
                national_sharing=national_sharing,
                facility_sharing=facility_sharing,
                by=by,
                role=role,
            ),
        )

    def read(self, *, patient_id: str, scope: Scope, audit: AuditIn) -> Audited[ConsentState]:
        """:meth:`get` for a caller, authorised on the patient itself (its first facility, sharing,
        a grant) and audited in the same transaction (``not_found``, ``denied``, ``success`` or
        ``break_glass``, on the Consent).

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Consent",
            resource_id=patient_id,
            locate=lambda session: _patient_target(session, patient_id),
            fetch=lambda session, _target: _consent.state(session, patient_id),
        )

    def read_by_identifier(
        self, *, identifier: str, issuer: str | None, scope: Scope, audit: AuditIn
    ) -> Audited[ConsentState]:
        """:meth:`read` of the patient known by ``(identifier, issuer)``: the lookup, the consent and its
        entry in one transaction (``not_found``, naming no patient, for a patient the record does not
        know; else as :meth:`read`, on the Consent of the patient it names).

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """

        def locate(session: Session) -> Target | None:
            found = _consent.by_identifier(session, identifier, issuer)
            if found is None:
                return None
            return Target(
                patient_id=found.patient_id, owner=None, patient_level=True, resource_id=found.patient_id
            )

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Consent",
            resource_id=None,
            locate=locate,
            fetch=lambda session, target: _consent.state(session, str(target.patient_id)),
        )

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
        audit: AuditIn | None = None,
    ) -> ConsentState:
        """Record a patient's choices (``True``: allowed), replacing earlier ones.

        ``facility_sharing`` None keeps the recorded consent to sharing between facilities. ``audit``
        (who records them) is written to the audit trail in the same transaction: the choices, and the
        training inputs an objection deletes, change with their entry or not at all.

        Raises:
            NotFound: No patient has this id.
            RecordError: The audit entry could not be written (nothing changed).
        """

        def work(session: Session) -> ConsentState:
            if session.get(Patient, patient_id) is None:
                raise NotFound("No patient has this id.")
            return _write(
                session,
                patient_id=patient_id,
                ai_processing=ai_processing,
                national_sharing=national_sharing,
                facility_sharing=facility_sharing,
                by=by,
                role=role,
                audit=audit,
            )

        return self._db.write(work)

    def set_by_identifier(
        self,
        *,
        patient: PatientIn,
        ai_processing: bool,
        national_sharing: bool,
        by: str,
        role: str,
        scope: Scope,
        audit: AuditIn,
        may_file: bool = True,
        facility_sharing: bool | None = None,
    ) -> Changed[ConsentState]:
        """:meth:`set_checked` of the patient ``(identifier, issuer)``, filed under ``patient.facility``
        first when unknown (so an objection is recorded before the first study arrives): the lookup, the
        filing, the check, the choices and their entry in one transaction, the audit head locked first (a
        patient filed or changed by another request is wholly before the lookup or wholly after the entry;
        no patient row is read outside an audited transaction).

        Args:
            may_file: False: an unknown patient is not the caller's to file (its issuer is another
                facility's own); audited ``denied``, naming no patient, and nothing is filed.

        Returns:
            The outcome (as :meth:`set_checked`; ``denied`` without a patient for an unknown patient the
            caller may not file) and, when made, the new state; the entry names the patient's id.

        Raises:
            RecordError: The patient cannot be filed (see ``validate_patient``), the record failed, or the
                audit entry could not be written: nothing was filed or changed.
        """

        def locate(session: Session) -> Target | None:
            found = _consent.by_identifier(session, patient.identifier, patient.issuer)
            if found is not None:
                patient_id = found.patient_id
            elif not may_file:
                return None
            else:
                _save.validate_patient(patient)
                patient_id = _save.upsert_patient(session, patient)[0].id
            return Target(patient_id=patient_id, owner=None, patient_level=True, resource_id=patient_id)

        return write_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Consent",
            resource_id=None,
            locate=locate,
            change=_choices(
                ai_processing=ai_processing,
                national_sharing=national_sharing,
                facility_sharing=facility_sharing,
                by=by,
                role=role,
            ),
            unknown=DENIED,
        )

    def sharing_allowed(self, *, patient_id: str) -> bool:
        """False when the patient objected to sharing with the national record or does not exist.

        The outbox calls this before queueing anything for an external destination.
        """
        with self._db.sessions() as session:
            if session.get(Patient, patient_id) is None:
                return False
            return _consent.state(session, patient_id).national_sharing


def _choices(
    *, ai_processing: bool, national_sharing: bool, facility_sharing: bool | None, by: str, role: str
) -> Callable[[Session, Target], ConsentState]:
    """What :func:`write_audited` changes: the patient's choices written onto the located target (its
    entry is the one ``write_audited`` appends, in the same transaction)."""

    def change(session: Session, target: Target) -> ConsentState:
        return _write(
            session,
            patient_id=str(target.patient_id),
            ai_processing=ai_processing,
            national_sharing=national_sharing,
            facility_sharing=facility_sharing,
            by=by,
            role=role,
            audit=None,
        )

    return change


def _patient_target(session: Session, patient_id: str) -> Target | None:
    """The patient as the access rules judge its consent (a patient-level row); None when unknown."""
    if session.get(Patient, patient_id) is None:
        return None
    return Target(patient_id=patient_id, owner=None, patient_level=True)


def _write(
    session: Session,
    *,
    patient_id: str,
    ai_processing: bool,
    national_sharing: bool,
    facility_sharing: bool | None,
    by: str,
    role: str,
    audit: AuditIn | None,
) -> ConsentState:
    if not ai_processing:  # an objection ends the keeping of their images for retraining
        _training_inputs.forget(session, patient_id)
    state = _consent.write(
        session,
        patient_id=patient_id,
        ai_processing=ai_processing,
        national_sharing=national_sharing,
        facility_sharing=facility_sharing,
        by=by,
        role=role,
        at=utcnow(),
    )
    if audit is not None:
        _audit.append_change(
            session, audit, resource_type="Consent", resource_id=patient_id, patient_id=patient_id
        )
    return state
