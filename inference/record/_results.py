"""Results and the worklist: filing a result in one transaction, reading it back, the readers' queue."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, case, false, func, literal, not_, select, true
from sqlalchemy.orm import Session, selectinload

from inference.record import _audit, _builds, _consent, _feedback, _outbox, _save, _scope, _series
from inference.record._consent import ConsentState
from inference.record._database import Database
from inference.record._errors import NotFound, RecordError, ResendConflict
from inference.record._inputs import (
    AuditIn,
    ImagingResultIn,
    InstanceIn,
    ModelRef,
    PatientIn,
    RenderingData,
    StoredResult,
    TriageResultIn,
)
from inference.record._models import Heatmap, Instance, Patient, Rendering, Result, Study, normalise_issuer
from inference.record._reads import (
    NOT_FOUND,
    SERVED,
    SUCCESS,
    Audited,
    Disclosure,
    Target,
    audited_transaction,
    outcome_of,
    read_audited,
    read_listing,
)
from inference.record._result_types import AnyResult, FeedbackEntry, ImagingResult, WorklistItem
from inference.record._views import typed_result, with_deliveries, worklist_item

logger = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class PictureRows:
    """What a result's pictures are drawn from: its display rendering and CAMs, or (filed before those
    were kept) the finding's stored overlay PNG."""

    rendering: RenderingData | None
    overlay: bytes | None


_RESULTS: Final = cast(Table, Result.__table__)
_OWNER: Final = select(_RESULTS.c.patient_id, _RESULTS.c.facility).where(
    _RESULTS.c.id == bindparam("result_id")
)
"""Built once: a result's patient and owning facility, what its access is judged on."""


def _result_target(session: Session, result_id: str) -> Target | None:
    """A result as the access rules judge it (its patient and owning facility); None: no such result."""
    row = session.execute(_OWNER, {"result_id": result_id}).first()
    return None if row is None else Target(patient_id=row.patient_id, owner=row.facility)


_PRIORITIES: Final = ("critical", "urgent", "routine")
_NOT_ASSESSABLE: Final = and_(
    Result.kind == "imaging",
    # Stored as a JSON boolean; results filed before the OOD guard have none and count as assessable.
    func.coalesce(Result.payload["assessable"].as_boolean(), true()) == false(),
)
_AI_STATUS: Final = {
    "analysed": and_(not_(_NOT_ASSESSABLE), Result.status != "failed"),
    "not_assessable": _NOT_ASSESSABLE,
    "failed": and_(not_(_NOT_ASSESSABLE), Result.status == "failed"),
}
"""The pages' AI status of a result (``inference.api.ui._views.ai_status``) as a condition of the query."""


_RESULT_LOAD: Final = (
    selectinload(Result.patient),
    selectinload(Result.findings),
    selectinload(Result.study),
    selectinload(Result.vitals),
)


def _filed_under(session: Session, study_instance_uid: str, patient: PatientIn) -> bool:
    """Whether the filed study is ``patient``'s: the same identifier, and the same issuer when one is
    sent (without one, the sender facility's default issuer applies, which the record does not know)."""
    row = session.execute(
        select(Patient.identifier, Patient.issuer)
        .join(Study, Study.patient_id == Patient.id)
        .where(Study.study_instance_uid == study_instance_uid)
    ).first()
    if row is None:
        return True
    sent = normalise_issuer(patient.issuer)
    return bool(row.identifier == patient.identifier and (not sent or sent == row.issuer))


def _check_paging(limit: int, offset: int) -> None:
    if not 1 <= limit <= 500 or offset < 0:
        raise RecordError("The worklist takes a limit from 1 to 500 and a non-negative offset.")


@dataclass(frozen=True, slots=True)
class AnalysedStudy:
    """What the record holds of a study analysed before, for instances of it that arrive later.

    Attributes:
        result_id: Its newest imaging result.
        view_position: View Position of the instance that result analysed (None: not given).
        assessable: Whether the model could assess that instance (False: a "not assessable" result,
            which no frontal view arriving later ranks below).
        stands: Whether the result stands for the late instances: they joined the study.
        joined: The SOP instance UIDs of those filed in the study now (none when the result does not
            stand, or each was filed already).
    """

    result_id: str
    view_position: str | None
    assessable: bool = True
    stands: bool = False
    joined: tuple[str, ...] = ()


class StudyIntake(NamedTuple):
    """What :meth:`Results.intake` reads of the record before a study is scored.

    Attributes:
        consent: The patient's consent; None for a patient the record does not know.
        resend: Whether the study is a resend (answered from the record, not analysed again).
        birth_date: The patient's birth date on file (ISO; None: unknown patient, or none on file),
            which the age check reads beside the header's.
    """

    consent: ConsentState | None
    resend: bool
    birth_date: str | None = None


def _resend_key(sent: _save.Sent) -> str:
    return _save.instance_key(sent.model, [i.sop_instance_uid for i in sent.instances])


def _fileable(sent: _save.Sent) -> bool:
    """Whether :meth:`Results.save_imaging` would get as far as its resend check (else it refuses them
    the normal way, after the analysis)."""
    try:
        _save.validate_patient(sent.patient)
        _save.validate_instances(sent.instances)
    except RecordError:
        return False
    return bool(sent.instances) and len(sent.study_instance_uid) <= 64


def _resend_in(session: Session, sent: _save.Sent) -> bool:
    """Whether filing ``sent`` would answer it with a result already filed (:meth:`Results.intake`)."""
    if not _fileable(sent):
        return False
    try:
        return _save.filed_resend(session, sent, _resend_key(sent)) is not None
    except ResendConflict:
        return False


class Results:
    """Imaging and triage results: filed one transaction each (with their audit entry), read back, listed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save_imaging(
        self, *, data: ImagingResultIn, audit: AuditIn | None = None, sender: _scope.Scope | None = None
    ) -> StoredResult:
        """File an imaging result (patient, study, instances, device, result, findings, heatmaps) atomically.

        Idempotent for a true resend: the same SOP instances with the same pixels, from the same facility,
        analysed by the same model version return the result already filed with ``created=False``.
        With ``audit``, the audit entry (``success``, or ``duplicate`` for a resend) is committed in the
        same transaction as the result. ``sender``: the scope of who sends it; a warning names the
        demographics that differ from the record only to a sender who may read the patient
        (:func:`inference.record._save.told_mismatches`).

        Raises:
            RecordError: the result is malformed (priority, probabilities, heatmap not a PNG ...).
            ResendConflict: the UIDs are already filed by another facility or with other pixels.
            Conflict: the study or an instance is already filed under another patient or study.
            ConsentObjection: the patient objected to AI processing after the intake read their consent
                (nothing filed; the refusal audited ``consent_objection``).
        """
        _save.validate_imaging(data)
        key = _save.instance_key(data.model, [i.sop_instance_uid for i in data.instances])

        def work(session: Session) -> StoredResult:
            stored = _save.write_imaging(session, data, key, audit, sender)
            if stored.result is not None:
                return stored  # a new result, typed from the rows just written
            # A resend: the result filed before, read back in the same transaction with its deliveries.
            return replace(stored, result=self._read(session, stored.result_id, deliveries=True))

        stored = self._filed(work, data, audit)
        if stored.created:
            logger.info("Filed imaging result %s.", stored.result_id)
        return stored

    def intake(
        self, *, study_instance_uid: str, patient: PatientIn, instances: Sequence[InstanceIn], model: ModelRef
    ) -> StudyIntake:
        """What a study's intake needs of the record before the model runs, in one read (one round trip on
        the request path): the consent of ``patient`` (None: a patient the record does not know), their
        birth date on file, and whether the study is a resend: :meth:`save_imaging` would answer these
        instances now with a result already filed (``created`` False), by the same rule
        (:func:`inference.record._save.filed_resend`), a read that writes nothing, so that a resend need
        not be analysed again. False for anything else (new instances, other pixels, another facility, a
        patient the study is not filed under, a conflict)."""
        sent = _save.Sent(study_instance_uid, patient, tuple(instances), model)
        with self._db.sessions() as session:
            found = _consent.with_birth_date(session, patient.identifier, patient.issuer)
            consent, birth_date = (None, None) if found is None else found
            return StudyIntake(consent, _resend_in(session, sent), birth_date)

    def answer_resend(
        self,
        *,
        study_instance_uid: str,
        patient: PatientIn,
        instances: Sequence[InstanceIn],
        model: ModelRef,
        audit: AuditIn | None = None,
    ) -> StoredResult | None:
        """The result already filed that these instances are a resend of, as :meth:`save_imaging` answers
        a resend: audited ``duplicate`` and read back with its deliveries in one transaction; None (nothing
        written) when they are not a resend any more (judged again here, as :meth:`intake` judged it).
        """
        sent = _save.Sent(study_instance_uid, patient, tuple(instances), model)
        if not _fileable(sent):
            return None

        def work(session: Session) -> StoredResult | None:
            try:
                stored = _save.write_resend(session, sent, _resend_key(sent), audit)
            except ResendConflict:
                return None  # filed the normal way, the refusal audited there
            if stored is None:
                return None
            return replace(stored, result=self._read(session, stored.result_id, deliveries=True))

        return self._db.write(work)

    def save_triage(
        self, *, data: TriageResultIn, audit: AuditIn | None = None, sender: _scope.Scope | None = None
    ) -> StoredResult:
        """File a triage result (patient, vital signs, device, result) atomically, with its audit entry.

        ``sender``: the scope of who sends it; a warning names the demographics that differ from the record
        only to a sender who may read the patient (:func:`inference.record._save.told_mismatches`).
        """
        _save.validate_triage(data)

        def work(session: Session) -> StoredResult:
            stored = _save.write_triage(session, data, audit, sender)
            return replace(stored, result=self._read(session, stored.result_id))

        stored = self._filed(work, data, audit)
        logger.info("Filed triage result %s.", stored.result_id)
        return stored

    def _filed(
        self,
        work: Callable[[Session], StoredResult],
        data: TriageResultIn | ImagingResultIn,
        audit: AuditIn | None,
    ) -> StoredResult:
        """``work`` committed; when its filing finds that the patient objected to AI processing after the
        request read their consent (:class:`ConsentObjection`), the refusal is put on the trail first."""
        try:
            return self._db.write(work)
        except _consent.ConsentObjection:
            if audit is not None:
                self._refused(data, audit)
            raise

    def _refused(self, data: TriageResultIn | ImagingResultIn, audit: AuditIn) -> None:
        """The entry of a result refused at filing: its patient objected to AI processing."""

        def work(session: Session) -> None:
            found = _consent.by_identifier(session, data.patient.identifier, data.patient.issuer)
            patient_id = None if found is None else found.patient_id
            _audit.append(
                session,
                **_audit.columns_of(
                    audit,
                    resource_type="Consent",
                    resource_id=patient_id,
                    patient_id=patient_id,
                    outcome="consent_objection",
                ),
            )

        self._db.write(work)

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
        with self._db.sessions() as session:
            return _series.triage_series(
                session, identifier=identifier, issuer=issuer, since=since, until=until, scope=scope
            )

    def triage_intake(
        self,
        *,
        identifier: str,
        issuer: str | None,
        since: datetime,
        until: datetime,
        scope: _scope.Scope | None = None,
        audit: AuditIn | None = None,
    ) -> _series.TriageIntake:
        """The patient's consent and earlier triage observations in ``[since, until)``, in one round trip.

        The first of the two transactions of ``POST /v1/vitals`` (the second files the result): the
        consent check before anything is scored and the series the new observation's trend is made of.

        With ``audit`` (and ``scope``): when the series holds another facility's observations (read on
        the patient's sharing consent or the reader's break-the-glass grant), they are read again in a
        transaction that audits their disclosure (``read_listing``: one entry naming the patient,
        resource type ``Observation``, ``break_glass`` when only the grant opens one of them), so the
        other facility's auditor finds it; that case takes one more round trip.

        Raises:
            RecordError: The disclosure's entry could not be written: nothing is served.
        """

        def fetch(session: Session) -> _series.TriageIntake:
            return _series.triage_intake(
                session, identifier=identifier, issuer=issuer, since=since, until=until, scope=scope
            )

        with self._db.sessions() as session:
            intake = fetch(session)
        if audit is None or scope is None or not intake.others:
            return intake

        def disclosed(_session: Session, found: _series.TriageIntake) -> Disclosure:
            if found.consent is None or not found.others:
                return Disclosure(patients=[])
            patient = found.consent.patient_id
            return Disclosure(
                patients=[patient], rows=[Target(patient_id=patient, owner=owner) for owner in found.others]
            )

        return read_listing(
            self._db, scope=scope, audit=audit, resource_type="Observation", fetch=fetch, disclosed=disclosed
        )

    def _load(self, session: Session, result_id: str) -> Result | None:
        return session.scalars(select(Result).options(*_RESULT_LOAD).where(Result.id == result_id)).first()

    def _typed(self, session: Session, result: Result, *, deliveries: bool) -> AnyResult:
        typed = typed_result(result)
        if not deliveries or not isinstance(typed, ImagingResult):
            return typed  # triage results are never delivered
        return with_deliveries(
            typed, _outbox.deliveries_in(session, result.id), _builds.pending_in(session, result.id)
        )

    def _read(self, session: Session, result_id: str, *, deliveries: bool = False) -> AnyResult:
        result = self._load(session, result_id)
        if result is None:  # written in this very transaction
            raise NotFound("No result has this id.")
        return self._typed(session, result, deliveries=deliveries)

    def get(self, *, result_id: str, deliveries: bool = False) -> AnyResult | None:
        """One result (no name, no birth date), or ``None``.

        With ``deliveries``, an imaging result carries the state of its DICOM outputs per destination
        (and its pending build), read in the same session.
        """
        with self._db.sessions() as session:
            result = self._load(session, result_id)
            return None if result is None else self._typed(session, result, deliveries=deliveries)

    def read(
        self, *, result_id: str, scope: _scope.Scope, audit: AuditIn, deliveries: bool = False
    ) -> Audited[AnyResult]:
        """One result as :meth:`get` reads it, if the caller may, with the access audited in the same
        transaction (:func:`inference.record._reads.read_audited`): ``not_found``, ``denied``, or
        ``success`` / ``break_glass`` with the result.

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Result",
            resource_id=result_id,
            locate=lambda session: _result_target(session, result_id),
            fetch=lambda session, _target: self._fetch(session, result_id, deliveries=deliveries),
        )

    def read_latest_for_study(
        self, *, study_instance_uid: str, scope: _scope.Scope, audit: AuditIn, deliveries: bool = False
    ) -> Audited[AnyResult]:
        """The newest imaging result of a study as :meth:`read` reads one (a study without a result is
        audited ``not_found`` on the ImagingStudy; the result found, on the result)."""

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="ImagingStudy",
            resource_id=study_instance_uid,
            locate=lambda session: self._newest_of_study(session, study_instance_uid),
            fetch=lambda session, target: self._fetch(
                session, str(target.resource_id), deliveries=deliveries
            ),
        )

    def read_latest_with_feedback(
        self, *, study_instance_uid: str, scope: _scope.Scope, audit: AuditIn
    ) -> Audited[tuple[AnyResult, list[FeedbackEntry]]]:
        """The newest result of a study with every feedback on it (oldest first), as
        :meth:`read_latest_for_study` reads it, in the transaction of its audit entry: ``not_found`` on the
        ImagingStudy when the study has no result, else on the result (``denied``, or ``success`` /
        ``break_glass`` with the result and its feedback).

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """

        def fetch(session: Session, target: Target) -> tuple[AnyResult, list[FeedbackEntry]] | None:
            result = self._fetch(session, str(target.resource_id), deliveries=False)
            return None if result is None else (result, _feedback.entries_in(session, result.result_id))

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="ImagingStudy",
            resource_id=study_instance_uid,
            locate=lambda session: self._newest_of_study(session, study_instance_uid),
            fetch=fetch,
        )

    def join_analysed(
        self,
        *,
        study_instance_uid: str,
        instances: Sequence[InstanceIn],
        patient: PatientIn,
        stands: Callable[[AnalysedStudy], bool],
        scope: _scope.Scope,
        audit: AuditIn,
    ) -> Audited[AnalysedStudy] | None:
        """Instances of a study analysed before that arrive late: the study's newest imaging result, read
        for their sender and judged by ``stands``; when its result stands, the instances not filed yet are
        filed in the study with no result of their own (its ImagingStudy lists them from then on), and
        the result, its SR and its outputs are left as they are.

        One transaction: the read is audited on the result as :meth:`read_latest_for_study` audits one,
        and the instances filed (if any) ``success`` on the ImagingStudy, with ``audit``'s action; both
        entries are committed with the rows or not at all.

        None, with no entry, nothing read and nothing filed, when the study has no result, is filed by
        another facility than ``audit``'s or under another patient than ``patient`` (the one the
        instances name), or when one of the instances is filed under another study, with other pixels,
        or holds a value over its column's size: analysed as a study, they are refused (a conflict,
        audited as such), never read into another's study. Likewise when the study's patient objected to
        AI processing: nothing of theirs is taken in, the instances are refused as any study of theirs
        (``consent_objection``, audited).

        Raises:
            RecordError: The record failed or an entry could not be written; nothing was filed.
        """
        try:
            _save.validate_instances(instances)
        except RecordError:
            return None

        def analysed_of(session: Session, result_id: str) -> AnalysedStudy | None:
            payload = session.scalar(select(Result.payload).where(Result.id == result_id))
            if not isinstance(payload, dict):
                return None
            primary = payload.get("primary_sop_instance_uid")
            view = session.scalar(select(Instance.view_position).where(Instance.sop_instance_uid == primary))
            return AnalysedStudy(
                result_id=result_id, view_position=view, assessable=bool(payload.get("assessable", True))
            )

        with audited_transaction(self._db) as (session, head):
            study = session.scalars(
                select(Study).where(Study.study_instance_uid == study_instance_uid)
            ).first()
            if study is None or study.facility is None or study.facility != audit.facility:
                return None
            if not _filed_under(session, study_instance_uid, patient):
                return None
            if not _consent.filed_state(session, study.patient_id).ai_processing:
                return None  # analysed as a study, they are refused as theirs are (consent_objection)
            known = _save.filed_in_study(session, instances, study_id=study.id)
            target = self._newest_of_study(session, study_instance_uid)
            if known is None or target is None or target.resource_id is None or target.patient_id is None:
                return None
            ground = _scope.basis(
                session, scope, patient_id=target.patient_id, owner=target.owner, patient_level=False
            )
            outcome = outcome_of(ground)
            analysed = analysed_of(session, target.resource_id) if outcome in SERVED else None
            if outcome in SERVED and analysed is None:
                outcome = NOT_FOUND
            if analysed is not None and stands(analysed):
                joined = _save.add_instances(session, study, instances, known)
                analysed = replace(analysed, stands=True, joined=joined)
            entries = [
                _audit.columns_of(
                    audit,
                    resource_type=str(target.resource_type),
                    resource_id=target.resource_id,
                    patient_id=target.patient_id,
                    outcome=outcome,
                )
            ]
            if analysed is not None and analysed.joined:
                entries.append(
                    _audit.columns_of(
                        audit,
                        resource_type="ImagingStudy",
                        resource_id=study.id,
                        patient_id=study.patient_id,
                        outcome=SUCCESS,
                    )
                )
            _audit.append_all_onto(session, head, entries)
        return Audited(
            outcome=outcome, value=analysed, patient_id=target.patient_id, resource_id=target.resource_id
        )

    def read_picture(
        self,
        *,
        result_id: str,
        scope: _scope.Scope,
        audit: AuditIn,
        resource_type: str,
        load: bool,
        overlay_code: str | None,
        prepare: Callable[[PictureRows | None], P | None],
        failures: tuple[type[Exception], ...] = (),
    ) -> Audited[P]:
        """A picture of a result, as :meth:`read` reads the result: ``prepare`` makes what is served from
        the stored rendering (``load``; else from what the caller keeps in memory, given None), in the
        read's transaction, so its entry says what became of it: ``not_found`` when it gives None,
        ``failure`` when it raises one of ``failures``.

        Args:
            overlay_code: With ``load``, the finding whose stored overlay PNG a result filed before
                renderings were kept is read instead.

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """

        def fetch(session: Session, _target: Target) -> P | None:
            if not load:
                return prepare(None)
            rendering = self._rendering(session, result_id)
            overlay = None
            if rendering is None and overlay_code is not None:
                overlay = session.scalars(
                    select(Heatmap.png).where(Heatmap.result_id == result_id, Heatmap.code == overlay_code)
                ).first()
            return prepare(PictureRows(rendering=rendering, overlay=overlay))

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type=resource_type,
            resource_id=result_id,
            locate=lambda session: _result_target(session, result_id),
            fetch=fetch,
            failures=failures,
        )

    @staticmethod
    def _newest_of_study(session: Session, study_instance_uid: str) -> Target | None:
        """The newest result of a study, as the access rules judge it (audited on the result)."""
        row = session.execute(
            select(Result.id, Result.patient_id, Result.facility)
            .join(Study, Result.study_id == Study.id)
            .where(Study.study_instance_uid == study_instance_uid)
            .order_by(Result.created_at.desc(), Result.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return Target(
            patient_id=row.patient_id, owner=row.facility, resource_type="Result", resource_id=row.id
        )

    def _fetch(self, session: Session, result_id: str, *, deliveries: bool) -> AnyResult | None:
        result = self._load(session, result_id)
        return None if result is None else self._typed(session, result, deliveries=deliveries)

    def _latest_for_study(self, session: Session, study_instance_uid: str) -> Result | None:
        return session.scalars(
            select(Result)
            .options(*_RESULT_LOAD)
            .join(Study, Result.study_id == Study.id)
            .where(Study.study_instance_uid == study_instance_uid)
            .order_by(Result.created_at.desc(), Result.id.desc())
            .limit(1)
        ).first()

    def latest_for_study(self, *, study_instance_uid: str, deliveries: bool = False) -> AnyResult | None:
        """The newest imaging result of a study, or ``None`` until there is one (``deliveries``: see
        :meth:`get`)."""
        with self._db.sessions() as session:
            result = self._latest_for_study(session, study_instance_uid)
            return None if result is None else self._typed(session, result, deliveries=deliveries)

    def study_priority(self, *, study_instance_uid: str) -> str | None:
        """The priority of the newest result of a study, or ``None``."""
        with self._db.sessions() as session:
            return _save.study_priority(session, study_instance_uid)

    def filed_imaging(
        self, *, model: ModelRef, sop_instance_uids: Sequence[str]
    ) -> tuple[str, str | None] | None:
        """The result these instances already have from this model version: ``(result_id, facility)``.

        The same key as :meth:`save_imaging`'s idempotency, so a batch run can skip a study it filed
        before without decoding it or running the model again.
        """
        key = _save.instance_key(model, list(sop_instance_uids))
        with self._db.sessions() as session:
            query = select(Result.id, Result.facility).where(Result.instance_key == key)
            row = session.execute(query).first()
            return None if row is None else (str(row[0]), row[1])

    def recent_imaging_scores(
        self, *, model_name: str, model_version: str, limit: int
    ) -> list[tuple[float | None, dict[str, float]]]:
        """``(ood score, {finding code: probability})`` of the newest ``limit`` imaging results of one
        model version, oldest first (what drift is measured on; no patient data)."""
        with self._db.sessions() as session:
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
        with self._db.sessions() as session:
            return session.scalars(
                select(Heatmap.png).where(Heatmap.result_id == result_id, Heatmap.code == code)
            ).first()

    def rendering(self, *, result_id: str) -> RenderingData | None:
        """The display rendering and CAMs of an imaging result, or ``None`` (triage, or filed before them)."""
        with self._db.sessions() as session:
            return self._rendering(session, result_id)

    def _rendering(self, session: Session, result_id: str) -> RenderingData | None:
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
    ) -> list[WorklistItem]:
        """Open results, critical before urgent before routine, then oldest first.

        Args:
            limit: at most this many items (1 to 500).
            offset: items to skip, for paging.
            facility: only results owned by this facility.
            escalate_before: a routine result filed before this time ranks with the urgent ones (the
                starvation guard: pure urgency ordering lets routine studies wait without bound); its
                item says ``escalated: true``.
            scope: only results the caller may read (applied in the query, before paging); each item
                shows the patient's age and sex only where the caller may read the patient itself.
        """
        _check_paging(limit, offset)
        query = self._worklist_query(
            limit=limit, offset=offset, facility=facility, escalate_before=escalate_before, scope=scope
        )
        with self._db.sessions() as session:
            return self._worklist_items(session, query, escalate_before)

    def _worklist_query(
        self,
        *,
        limit: int,
        offset: int,
        facility: str | None,
        escalate_before: datetime | None,
        scope: _scope.Scope | None,
        priority: str | None = None,
        ai_status: str | None = None,
    ) -> Any:
        waited_too_long = (
            (Result.created_at < escalate_before) if escalate_before is not None else literal(False)
        )
        rank = case(
            (Result.priority == "critical", 0),
            (Result.priority == "urgent", 1),
            (waited_too_long, 1),
            else_=2,
        )
        shown = true() if scope is None else _scope.visible(scope, owner=None, patient=Result.patient_id)
        query = (
            select(Result, shown)
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
        if priority is not None:
            query = query.where(Result.priority == priority)
        if ai_status is not None:
            query = query.where(_AI_STATUS[ai_status])
        return query

    def read_worklist(
        self,
        *,
        scope: _scope.Scope,
        audit: AuditIn,
        limit: int = 50,
        offset: int = 0,
        facility: str | None = None,
        escalate_before: datetime | None = None,
    ) -> list[WorklistItem]:
        """:meth:`worklist` for a caller, audited in its transaction (``read_listing``): one ``Worklist``
        entry per patient listed, ``break_glass`` for a patient whose listed results (or age and sex)
        only the caller's grant opens.

        Raises:
            RecordError: Bad paging, the record failed, or the entries could not be written (nothing is
                served).
        """
        _check_paging(limit, offset)
        items, _more = self._read_open(
            scope=scope, audit=audit, limit=limit, offset=offset, facility=facility,
            escalate_before=escalate_before, peek=False,
        )  # fmt: skip
        return items

    def read_worklist_page(
        self,
        *,
        scope: _scope.Scope,
        audit: AuditIn,
        limit: int,
        facility: str | None = None,
        escalate_before: datetime | None = None,
        priority: str | None = None,
        ai_status: str | None = None,
    ) -> tuple[list[WorklistItem], bool]:
        """The first ``limit`` items of :meth:`read_worklist` that the page's filters accept, and whether
        more wait, audited in the read's transaction for the items listed only.

        The filters are applied in the query, so that a filter finds its items however many others rank
        above them, and the read takes one statement however long the queue.

        Args:
            scope: The caller's grounds.
            audit: Who reads, and the action.
            limit: At most this many items (1 to 500).
            facility: Only results owned by this facility.
            escalate_before: As for :meth:`worklist` (an escalated routine result keeps its priority
                ``routine`` for the filter).
            priority: Only results of this priority (``critical``, ``urgent``, ``routine``).
            ai_status: Only results of this AI status: ``analysed``, ``not_assessable`` (an imaging result
                whose image the model refused as out of its distribution) or ``failed`` (as the pages'
                ``ai_status`` tells them apart).

        Returns:
            The items, most urgent first, and True when more open results that the filters accept wait.

        Raises:
            RecordError: A limit out of range or an unknown filter value, the record failed, or the
                entries could not be written (nothing is served).
        """
        _check_paging(limit, 0)
        if priority is not None and priority not in _PRIORITIES:
            raise RecordError(f"The worklist's priority filter takes one of {', '.join(_PRIORITIES)}.")
        if ai_status is not None and ai_status not in _AI_STATUS:
            raise RecordError(f"The worklist's AI status filter takes one of {', '.join(_AI_STATUS)}.")
        return self._read_open(
            scope=scope, audit=audit, limit=limit, offset=0, facility=facility,
            escalate_before=escalate_before, priority=priority, ai_status=ai_status, peek=True,
        )  # fmt: skip

    def _read_open(
        self,
        *,
        scope: _scope.Scope,
        audit: AuditIn,
        limit: int,
        offset: int,
        facility: str | None,
        escalate_before: datetime | None,
        priority: str | None = None,
        ai_status: str | None = None,
        peek: bool,
    ) -> tuple[list[WorklistItem], bool]:
        # ``peek``: one item past the limit tells whether more wait; it is neither served nor audited.
        query = self._worklist_query(
            limit=limit + 1 if peek else limit, offset=offset, facility=facility,
            escalate_before=escalate_before, scope=scope, priority=priority, ai_status=ai_status,
        )  # fmt: skip

        def fetch(session: Session) -> tuple[list[WorklistItem], bool]:
            items = self._worklist_items(session, query, escalate_before)
            return items[:limit], len(items) > limit

        def disclosed(_session: Session, page: tuple[list[WorklistItem], bool]) -> Disclosure:
            items = page[0]
            patients = [item.patient.id for item in items]
            # An item of a patient opened by a grant shows the patient's own age and sex (a patient-level
            # row); otherwise what it shows is the result's own sender's.
            shown = [i.patient.id for i in items if i.patient.age is not None or i.patient.sex is not None]
            return Disclosure(
                patients=patients,
                rows=[Target(patient_id=p, owner=facility) for p in patients]
                + [Target(patient_id=p, owner=None, patient_level=True) for p in shown],
            )

        return read_listing(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Worklist",
            fetch=fetch,
            disclosed=disclosed,
        )

    def _worklist_items(
        self, session: Session, query: Any, escalate_before: datetime | None
    ) -> list[WorklistItem]:
        return [
            worklist_item(result, patient_shown=bool(patient_shown), escalate_before=escalate_before)
            for result, patient_shown in session.execute(query)
        ]

    def mark_read(self, *, result_id: str, audit: AuditIn | None = None) -> None:
        """Mark a result reviewed: it leaves the worklist.

        ``audit`` (who closes it) is written to the audit trail in the same transaction (outcome
        ``read``): the result is closed with its entry or not at all.

        Raises:
            NotFound: no such result.
            RecordError: The audit entry could not be written (the result stays open).
        """

        def work(session: Session) -> None:
            result = session.get(Result, result_id)
            if result is None:
                raise NotFound("No result has this id.")
            result.status = "reviewed"
            if audit is not None:
                _audit.append_change(
                    session,
                    audit,
                    resource_type="Result",
                    resource_id=result.id,
                    patient_id=result.patient_id,
                    outcome="read",
                )

        self._db.write(work)

    def patient_of(self, *, result_id: str) -> tuple[str, str | None] | None:
        """``(patient_id, owning facility)`` of a result, or ``None`` when there is no such result."""
        with self._db.sessions() as session:
            row = session.execute(
                select(Result.patient_id, Result.facility).where(Result.id == result_id)
            ).first()
            return None if row is None else (row[0], row[1])
