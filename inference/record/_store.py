"""``Record``: the patient record service (results, worklist, feedback, audit, FHIR views)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import case, event, func, literal, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from inference.record import _audit, _break_glass, _consent, _save, _scope, _series, _training_inputs
from inference.record._anchor import HeadAnchor
from inference.record._audit import AuditReport
from inference.record._consent import ConsentState
from inference.record._engine import IMMEDIATE, make_engine, upgrade_to_head
from inference.record._errors import Conflict, InvalidFeedback, NotFound, RecordError
from inference.record._inputs import (
    AuditIn,
    ImagingResultIn,
    PatientIn,
    RenderingData,
    StoredResult,
    TriageResultIn,
    Verdict,
)
from inference.record._models import (
    AuditEvent,
    Feedback,
    Finding,
    Heatmap,
    IdentityMismatch,
    Patient,
    Rendering,
    Result,
    Study,
)
from inference.record._types import iso, new_id, utcnow
from inference.record._views import TRIAGE_FEEDBACK_CODE, public_result, worklist_item
from inference.record.fhir import _search

logger = logging.getLogger(__name__)

T = TypeVar("T")

VERDICTS: Final[tuple[str, ...]] = ("agree", "disagree", "correct")
_WRITE_ATTEMPTS: Final = 3
_RESULT_LOAD = (
    selectinload(Result.patient),
    selectinload(Result.findings),
    selectinload(Result.study),
    selectinload(Result.vitals),
)


def _watch_head(sessions: sessionmaker[Session], anchor: HeadAnchor) -> None:
    """Anchor the newest audit head after every commit that appended entries (see ``_anchor``)."""

    @event.listens_for(sessions, "after_commit")
    def _committed(session: Session) -> None:
        head = session.info.pop(_audit.PENDING_HEAD, None)
        if head is None:
            return
        try:
            anchor.advance(*head)
        except OSError:
            # The entries are committed; the anchor stays behind (a lower bound) until the next append.
            logger.error("the audit head anchor could not be written", extra={"code": "anchor_write_failed"})

    @event.listens_for(sessions, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(_audit.PENDING_HEAD, None)


def _is_check_violation(error: IntegrityError) -> bool:
    # psycopg reports SQLSTATE 23514; sqlite3 only says so in its message.
    return getattr(error.orig, "sqlstate", None) == "23514" or "CHECK constraint failed" in str(error.orig)


class Record:
    """The patient record behind the API: one transaction per result, FHIR views, audit trail.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/record.db`` or ``postgresql+psycopg://user@host/db``.

    Every method takes keyword arguments only and returns plain dataclasses or dicts.
    """

    def __init__(self, url: str, *, anchor: HeadAnchor | None = None) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.anchor = anchor
        if anchor is not None:
            _watch_head(self.sessions, anchor)

    # -- lifecycle -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``); safe to run every start."""
        upgrade_to_head(self.engine)

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            logger.warning("The patient record database does not answer.", exc_info=True)
            return False
        return True

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- writing results -------------------------------------------------------------------------

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, retrying when a concurrent writer won a UNIQUE race."""
        last: IntegrityError | None = None
        for _ in range(_WRITE_ATTEMPTS):
            try:
                with self.sessions() as session, session.begin():
                    session.connection(execution_options={IMMEDIATE: True})
                    return work(session)
            except IntegrityError as e:
                if _is_check_violation(e):
                    raise RecordError(
                        "The result was refused by the record's integrity checks (a heatmap must be a PNG, "
                        "probabilities lie between 0 and 1, vital signs use the contract's codes); "
                        "nothing was saved."
                    ) from e
                # Another writer filed the same patient, study, device or result between our read and
                # our insert: the next attempt reads what it wrote.
                logger.info("A concurrent write to the record won a race; retrying the transaction.")
                last = e
            except DBAPIError as e:
                raise RecordError("The record could not store the result; nothing was saved.") from e
        raise Conflict("The result could not be stored because concurrent writes kept conflicting.") from last

    def save_imaging_result(self, *, data: ImagingResultIn, audit: AuditIn | None = None) -> StoredResult:
        """File an imaging result (patient, study, instances, device, result, findings, heatmaps) atomically.

        Idempotent for a true resend: the same SOP instances with the same pixels, from the same facility,
        analysed by the same model version return the result already filed with ``created=False``.
        With ``audit``, the audit entry (``success``, or ``duplicate`` for a resend) is committed in the
        same transaction as the result.

        Raises:
            RecordError: the result is malformed (priority, probabilities, heatmap not a PNG ...).
            ResendConflict: the UIDs are already filed by another facility or with other pixels.
            Conflict: the study or an instance is already filed under another patient or study.
        """
        _save.validate_imaging(data)
        key = _save.instance_key(data.model, [i.sop_instance_uid for i in data.instances])
        stored = self._write(lambda session: _save.write_imaging(session, data, key, audit))
        if stored.created:
            logger.info("Filed imaging result %s.", stored.result_id)
        return stored

    def save_triage_result(self, *, data: TriageResultIn, audit: AuditIn | None = None) -> StoredResult:
        """File a triage result (patient, vital signs, device, result) atomically, with its audit entry."""
        _save.validate_triage(data)
        stored = self._write(lambda session: _save.write_triage(session, data, audit))
        logger.info("Filed triage result %s.", stored.result_id)
        return stored

    def triage_series(
        self,
        *,
        identifier: str,
        issuer: str | None,
        since: datetime,
        until: datetime,
        scope: _scope.Scope | None = None,
    ) -> list[dict[str, Any]]:
        """The patient's triage observations in ``[since, until)``, oldest first (see ``_series``);
        with ``scope``, only those the caller may read."""
        with self.sessions() as session:
            return _series.triage_series(
                session, identifier=identifier, issuer=issuer, since=since, until=until, scope=scope
            )

    # -- reading results -------------------------------------------------------------------------

    def _load(self, session: Session, result_id: str) -> Result | None:
        return session.scalars(select(Result).options(*_RESULT_LOAD).where(Result.id == result_id)).first()

    def get_result(self, *, result_id: str) -> dict[str, Any] | None:
        """The public JSON of one result (no name, no birth date), or ``None``."""
        with self.sessions() as session:
            result = self._load(session, result_id)
            return None if result is None else public_result(result)

    def _latest_for_study(self, session: Session, study_instance_uid: str) -> Result | None:
        return session.scalars(
            select(Result)
            .options(*_RESULT_LOAD)
            .join(Study, Result.study_id == Study.id)
            .where(Study.study_instance_uid == study_instance_uid)
            .order_by(Result.created_at.desc(), Result.id.desc())
            .limit(1)
        ).first()

    def latest_study_result(self, *, study_instance_uid: str) -> dict[str, Any] | None:
        """The public JSON of the newest imaging result of a study, or ``None`` until there is one."""
        with self.sessions() as session:
            result = self._latest_for_study(session, study_instance_uid)
            return None if result is None else public_result(result)

    def study_priority(self, *, study_instance_uid: str) -> str | None:
        """The priority of the newest result of a study, or ``None``."""
        with self.sessions() as session:
            return session.scalars(
                select(Result.priority)
                .join(Study, Result.study_id == Study.id)
                .where(Study.study_instance_uid == study_instance_uid)
                .order_by(Result.created_at.desc(), Result.id.desc())
                .limit(1)
            ).first()

    def recent_imaging_scores(
        self, *, model_name: str, model_version: str, limit: int
    ) -> list[tuple[float | None, dict[str, float]]]:
        """``(ood score, {finding code: probability})`` of the newest ``limit`` imaging results of one
        model version, oldest first (what drift is measured on; no patient data)."""
        with self.sessions() as session:
            results = session.scalars(
                select(Result)
                .options(selectinload(Result.findings))
                .where(
                    Result.kind == "imaging",
                    Result.model_name == model_name,
                    Result.model_version == model_version,
                )
                .order_by(Result.created_at.desc(), Result.id.desc())
                .limit(limit)
            ).all()
            rows = [
                ((r.ood or {}).get("score"), {f.code: f.probability for f in r.findings}) for r in results
            ]
        return rows[::-1]

    def heatmap(self, *, result_id: str, code: str) -> bytes | None:
        """The PNG heatmap of one finding, or ``None``."""
        with self.sessions() as session:
            return session.scalars(
                select(Heatmap.png).where(Heatmap.result_id == result_id, Heatmap.code == code)
            ).first()

    def rendering(self, *, result_id: str) -> RenderingData | None:
        """The display rendering and CAMs of an imaging result, or ``None`` (triage, or filed before them)."""
        with self.sessions() as session:
            row = session.execute(
                select(Rendering, Result.model_name, Result.model_version)
                .join(Result, Result.id == Rendering.result_id)
                .where(Rendering.result_id == result_id)
            ).first()
            if row is None:
                return None
            rendering, name, version = row
            return RenderingData(
                display=rendering.display,
                cams=rendering.cams,
                geometry=dict(rendering.geometry),
                model=(name, version),
            )

    def worklist(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        facility: str | None = None,
        escalate_before: datetime | None = None,
        scope: _scope.Scope | None = None,
    ) -> list[dict[str, Any]]:
        """Open results, critical before urgent before routine, then oldest first.

        Args:
            limit: at most this many items (1 to 500).
            offset: items to skip, for paging.
            facility: only results owned by this facility.
            escalate_before: a routine result filed before this time ranks with the urgent ones (the
                starvation guard: pure urgency ordering lets routine studies wait without bound); its
                item says ``escalated: true``.
            scope: only results the caller may read (applied in the query, before paging).
        """
        if not 1 <= limit <= 500 or offset < 0:
            raise RecordError("The worklist takes a limit from 1 to 500 and a non-negative offset.")
        waited_too_long = (
            (Result.created_at < escalate_before) if escalate_before is not None else literal(False)
        )
        rank = case(
            (Result.priority == "critical", 0),
            (Result.priority == "urgent", 1),
            (waited_too_long, 1),
            else_=2,
        )
        query = (
            select(Result)
            .options(*_RESULT_LOAD)
            .where(Result.status == "open")
            .order_by(rank, Result.created_at, Result.id)
            .limit(limit)
            .offset(offset)
        )
        if facility is not None:
            query = query.where(Result.facility == facility)
        if scope is not None:
            query = query.where(_scope.results_visible(scope))
        with self.sessions() as session:
            results = session.scalars(query)
            return [worklist_item(result, escalate_before=escalate_before) for result in results]

    # -- feedback --------------------------------------------------------------------------------

    def save_feedback(
        self, *, result_id: str, reader: str, verdicts: Sequence[Verdict], close: bool = True
    ) -> str:
        """Store a reader's verdicts with the exact model of the result and mark the result reviewed.

        With ``close=False`` the result stays open (the web viewer records a verdict per finding, and the
        reader closes the result with :meth:`mark_read`).

        Imaging results take one verdict per finding code; triage results take the code
        ``deterioration``. ``correct`` needs ``correct_label`` (the label the reader says is right).

        Returns:
            The feedback id.

        Raises:
            NotFound: no such result.
            InvalidFeedback: an unknown code or verdict, a repeated code, or no verdict at all.
        """
        if not verdicts:
            raise InvalidFeedback("Feedback needs at least one verdict.")
        codes = [verdict.code for verdict in verdicts]
        if len(set(codes)) != len(codes):
            raise InvalidFeedback("Each finding may receive one verdict per feedback.")
        for verdict in verdicts:
            if verdict.verdict not in VERDICTS:
                raise InvalidFeedback(
                    f"Verdict {verdict.verdict!r} is not accepted; use one of {', '.join(VERDICTS)}."
                )
            if verdict.verdict == "correct" and verdict.correct_label is None:
                raise InvalidFeedback(
                    f"A 'correct' verdict on '{verdict.code}' needs correct_label (true or false)."
                )

        def work(session: Session) -> str:
            result = session.get(Result, result_id)
            if result is None:
                raise NotFound("No result has this id.")
            if result.kind == "imaging":
                known = set(session.scalars(select(Finding.code).where(Finding.result_id == result_id)))
            else:
                known = {TRIAGE_FEEDBACK_CODE}
            unknown = sorted(set(codes) - known)
            if unknown:
                raise InvalidFeedback(
                    f"Finding code(s) {', '.join(unknown)} are not part of this result; "
                    f"accepted codes are {', '.join(sorted(known))}."
                )
            feedback = Feedback(
                id=new_id(),
                result_id=result.id,
                reader=reader,
                verdicts=[
                    {"code": v.code, "verdict": v.verdict, "correct_label": v.correct_label} for v in verdicts
                ],
                model_name=result.model_name,
                model_version=result.model_version,
                created=utcnow(),
            )
            session.add(feedback)
            if close:
                result.status = "reviewed"
            return feedback.id

        return self._write(work)

    def mark_read(self, *, result_id: str) -> None:
        """Mark a result reviewed: it leaves the worklist.

        Raises:
            NotFound: no such result.
        """

        def work(session: Session) -> None:
            result = session.get(Result, result_id)
            if result is None:
                raise NotFound("No result has this id.")
            result.status = "reviewed"

        self._write(work)

    def feedback(self, *, result_id: str) -> list[dict[str, Any]]:
        """Every feedback on a result, oldest first, with the model name and version it judged."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Feedback)
                .where(Feedback.result_id == result_id)
                .order_by(Feedback.created, Feedback.id)
            )
            return [
                {
                    "feedback_id": row.id,
                    "result_id": row.result_id,
                    "reader": row.reader,
                    "verdicts": list(row.verdicts),
                    "model": {"name": row.model_name, "version": row.model_version},
                    "created": iso(row.created),
                }
                for row in rows
            ]

    # -- authorisation helpers -------------------------------------------------------------------

    def patient_facility(self, *, patient_id: str) -> str | None:
        """The facility managing a patient (``None`` when unknown or unset)."""
        with self.sessions() as session:
            return session.scalars(select(Patient.facility).where(Patient.id == patient_id)).first()

    def result_patient(self, *, result_id: str) -> tuple[str, str | None] | None:
        """``(patient_id, owning facility)`` of a result, or ``None`` when there is no such result."""
        with self.sessions() as session:
            row = session.execute(
                select(Result.patient_id, Result.facility).where(Result.id == result_id)
            ).first()
            return None if row is None else (row[0], row[1])

    def access_basis(
        self, *, scope: _scope.Scope, patient_id: str, owner: str | None, patient_level: bool = False
    ) -> str | None:
        """The ground on which a caller reads a row (see :mod:`inference.record._scope`); None: refused."""
        with self.sessions() as session:
            return _scope.basis(
                session, scope, patient_id=patient_id, owner=owner, patient_level=patient_level
            )

    def find_patient(self, *, identifier: str, issuer: str | None) -> str | None:
        """The id of the patient ``(identifier, issuer)`` (issuer normalised), or None."""
        with self.sessions() as session:
            return session.scalars(
                select(Patient.id).where(
                    Patient.identifier == identifier, Patient.issuer == _save.normalise_issuer(issuer)
                )
            ).first()

    def identity_mismatches(self, *, patient_id: str) -> list[dict[str, Any]]:
        """Who sent demographics differing from the record, and which fields (oldest first, no values)."""
        with self.sessions() as session:
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

    # -- break the glass ---------------------------------------------------------------------------

    def open_break_glass(
        self, *, patient_id: str, reason: str, minutes: int, audit: AuditIn
    ) -> dict[str, Any]:
        """Open a break-the-glass access for ``audit.subject``, audited in the same transaction.

        Raises:
            NotFound: No patient has this id.
            RecordError: A reason or duration outside the accepted range (see ``_break_glass``).
        """
        return self._write(
            lambda session: _break_glass.open_grant(
                session, patient_id=patient_id, reason=reason, minutes=minutes, audit=audit
            )
        )

    def break_glass_grants(
        self, *, facility: str | None, active_only: bool = False, limit: int = 50, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """Break-the-glass grants for auditors, newest first: ``(total, page)``."""
        with self.sessions() as session:
            return _break_glass.listing(
                session, facility=facility, active_only=active_only, limit=limit, offset=offset
            )

    # -- audit -----------------------------------------------------------------------------------

    def append_audits(self, *, entries: Sequence[Mapping[str, Any]]) -> None:
        """Chain several events in one transaction (a read that disclosed several patients).

        Raises:
            RecordError: The events could not be written; callers fail the request they were auditing.
        """
        now = utcnow()
        try:
            with self.sessions() as session, session.begin():
                session.connection(execution_options={IMMEDIATE: True})
                for entry in entries:
                    _audit.append(session, time=now, **entry)
        except SQLAlchemyError as e:
            raise RecordError("The audit events could not be written.") from e

    def append_audit(
        self,
        *,
        subject: str,
        role: str,
        facility: str | None,
        action: str,
        resource_type: str | None,
        resource_id: str | None,
        patient_id: str | None,
        outcome: str,
        client: str | None,
    ) -> int:
        """Chain one event onto the audit trail and return its ``seq``.

        Appends are serialised (the chain head is locked), so concurrent writers, threads or replicas,
        never fork the chain. The table refuses updates and deletes.

        Raises:
            RecordError: The event could not be written; callers fail the request they were auditing.
        """
        columns = {
            "time": utcnow(),
            "subject": subject,
            "role": role,
            "facility": facility,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "patient_id": patient_id,
            "outcome": outcome,
            "client": client,
        }
        try:
            with self.sessions() as session, session.begin():
                session.connection(execution_options={IMMEDIATE: True})
                return int(_audit.append(session, **columns).seq or 0)
        except SQLAlchemyError as e:
            raise RecordError("The audit event could not be written.") from e

    def audit_events(
        self, *, patient_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Audit events, newest first, optionally only those about one patient (``time`` as ISO text)."""
        with self.sessions() as session:
            _total, rows = _audit.search(session, patient_id=patient_id, limit=limit, offset=offset)
        return [{**row, "time": iso(row["time"])} for row in rows]

    def search_audit(self, **filters: Any) -> tuple[int, list[dict[str, Any]]]:
        """Audit entries matching the filters of :func:`inference.record._audit.search`, newest first."""
        with self.sessions() as session:
            return _audit.search(session, **filters)

    def count_audit_events(self) -> int:
        """How many audit events the trail holds."""
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)

    def verify_audit(self) -> AuditReport:
        """Recompute the whole audit chain; the report lists every edited, deleted or inserted entry.

        With an anchor, the chain must also hold the anchored head exactly (see ``_anchor``): a
        re-chained or truncated trail fails even when it is consistent in itself.
        """
        with self.sessions() as session:
            report = _audit.verify(session)
        if self.anchor is not None:
            _audit.check_anchor(self, report)
        return report

    # -- consent ---------------------------------------------------------------------------------

    def consent(self, *, patient_id: str) -> ConsentState:
        """A patient's consent (both purposes allowed when nothing was recorded).

        Raises:
            NotFound: No patient has this id.
        """
        with self.sessions() as session:
            if session.get(Patient, patient_id) is None:
                raise NotFound("No patient has this id.")
            return _consent.state(session, patient_id)

    def consent_for(self, *, identifier: str, issuer: str | None) -> ConsentState | None:
        """The consent of the patient known by ``(identifier, issuer)``; None for an unknown patient."""
        with self.sessions() as session:
            return _consent.by_identifier(session, identifier, issuer)

    def set_consent(
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

        return self._write(work)

    def register_patient(self, *, patient: PatientIn) -> str:
        """The id of the patient ``(identifier, issuer)``, filed now (without any result) when new.

        Lets a consent be recorded before the patient's first study or vital signs arrive.
        """
        _save.validate_patient(patient)
        return self._write(lambda session: _save.upsert_patient(session, patient)[0].id)

    def ai_processing_allowed(self, *, identifier: str, issuer: str | None) -> bool:
        """False when the patient ``(identifier, issuer)`` objected to AI processing."""
        found = self.consent_for(identifier=identifier, issuer=issuer)
        return found is None or found.ai_processing

    def sharing_allowed(self, *, patient_id: str) -> bool:
        """False when the patient objected to sharing with the national record or does not exist.

        The outbox calls this before queueing anything for an external destination.
        """
        with self.sessions() as session:
            if session.get(Patient, patient_id) is None:
                return False
            return _consent.state(session, patient_id).national_sharing

    # -- FHIR ------------------------------------------------------------------------------------

    def fhir_read(self, *, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """One FHIR R4 resource as JSON, or ``None`` when absent or of a type not served.

        Not scoped: callers authorise with :meth:`fhir_owner` first (to answer 403 rather than 404).
        """
        with self.sessions() as session:
            return _search.read(session, resource_type, resource_id)

    def fhir_search(
        self,
        *,
        resource_type: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]],
        base_url: str,
        scope: _scope.Scope | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """A FHIR ``searchset`` Bundle; ``base_url`` is the FHIR base (e.g. ``http://host/fhir``).

        With ``scope``, only what the caller may read is matched: in the query, so ``total`` and the
        pages count nothing else. Unsupported parameters are ignored unless ``strict``.

        Raises:
            InvalidSearch: unsupported type, an unsupported parameter when ``strict``, a malformed value.
        """
        with self.sessions() as session:
            return _search.search(session, resource_type, params, base_url, scope, strict=strict)

    def fhir_owner(
        self, *, resource_type: str, resource_id: str
    ) -> tuple[str | None, str | None, bool] | None:
        """``(patient id, owning facility, patient-level)`` of a FHIR resource; None when absent.

        A Device has no patient; a Patient is patient-level (no owning facility: see ``_scope``).
        """
        with self.sessions() as session:
            return _search.owner_of(session, resource_type, resource_id)

    def capability_statement(self, *, base_url: str) -> dict[str, Any]:
        """The R4 CapabilityStatement of the FHIR views."""
        from inference import __version__

        return _search.capability_statement(base_url, __version__)
