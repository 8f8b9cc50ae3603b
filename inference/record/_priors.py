"""The viewer's read: one result, the reader's verdicts on it, and the patient's prior studies, authorised,
read and audited in one transaction.

A reader compares a film with the patient's earlier ones. The priors are the patient's other studies
dated before this one, each by its newest imaging result that the reader may read (the access rules of
the worklist: the reader's facility, the patient's sharing consent, the reader's break-the-glass grant),
newest first and bounded. Each prior shown is a read of that result: one ``Result`` entry per prior, in the
transaction (and after the entry) of the page's own read, with its own ground (``success`` or
``break_glass``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from inference.record import _audit, _feedback, _scope
from inference.record._database import Database
from inference.record._inputs import AuditIn
from inference.record._models import Feedback, Patient, Result, Study
from inference.record._reads import NOT_FOUND, SERVED, Audited, audited_transaction, outcome_of
from inference.record._result_types import (
    AnyResult,
    FeedbackEntry,
    FeedbackVerdict,
    FindingResult,
    ImagingResult,
    ModelInfo,
    Priority,
)
from inference.record._types import age_at, utcnow
from inference.record._views import filed_findings, filed_synthetic

if TYPE_CHECKING:
    from inference.record._results import Results

PRIORS_SHOWN: Final = 10
"""The viewer lists at most this many prior studies (the newest) and says how many older ones it left."""


@dataclass(frozen=True, slots=True)
class PriorStudy:
    """One earlier study of the patient, by its newest imaging result the reader may read.

    Attributes:
        result_id: That result (the viewer links to it).
        study_date: The study's date (ISO), else None (then ``created_at`` dates it).
        created_at: When the result was filed.
        priority: The result's triage level.
        status: ``open`` or ``reviewed`` (marked read).
        model: The model that scored it.
        assessable: False when the model refused the image as outside its distribution (no score stands).
        findings: Its findings, in the model's order.
        verdicts: The newest readers' verdict per finding code (any reader), if any.
    """

    result_id: str
    study_date: str | None
    created_at: datetime
    priority: Priority
    status: str
    model: ModelInfo
    assessable: bool
    findings: tuple[FindingResult, ...]
    verdicts: Mapping[str, FeedbackVerdict]


@dataclass(frozen=True, slots=True)
class PriorStudies:
    """The prior studies shown, newest first, and how many older ones the reader may read were left out."""

    studies: tuple[PriorStudy, ...]
    older: int


@dataclass(frozen=True, slots=True)
class ViewedPatient:
    """The patient's age and sex as the viewer's header shows them (never logged).

    Attributes:
        age: Whole years, else None (no birth date the reader may read, or none on file).
        age_at: ``study``: at the study's date, from the birth date on file (the record keeps no DICOM
            Patient's Age); ``analysis``: when the result was filed (a result without a study date, or
            the age this result's own facility sent with it).
        sex: As the record keeps it (``female``, ``male``, ``other``, ``unknown``), else None.
    """

    age: int | None
    age_at: Literal["study", "analysis"]
    sex: str | None


@dataclass(frozen=True, slots=True)
class ViewerRead:
    """What the viewer shows of one result.

    Attributes:
        result: The result.
        feedback: The reader's own feedback on it, oldest first.
        priors: The patient's prior studies (None for a vital-signs result).
        study_date: The date of the result's own study (ISO or DICOM ``YYYYMMDD`` as filed), else None.
        patient: The patient's age and sex as the reader may read them (:func:`_viewed_patient`).
    """

    result: AnyResult
    feedback: list[FeedbackEntry]
    priors: PriorStudies | None
    study_date: str | None = None
    patient: ViewedPatient | None = None


def _dated(study_date: str | None, created_at: datetime) -> tuple[str, datetime]:
    """A study's place in time: its date, else the day its result was filed; then the filing time."""
    return (study_date or created_at.date().isoformat(), created_at)


class PriorReads:
    """The viewer's audited read of a result with the patient's prior studies."""

    def __init__(self, db: Database, results: Results) -> None:
        self._db = db
        self._results = results

    def read_with_priors(
        self, *, result_id: str, reader: str, scope: _scope.Scope, audit: AuditIn, limit: int = PRIORS_SHOWN
    ) -> Audited[ViewerRead]:
        """One result as ``results.read`` reads it (with its deliveries), and, for an
        imaging result, the patient's prior studies the caller may read (at most ``limit``), in the
        transaction of the read's entries: the result's (``not_found``, ``denied``, or ``success`` /
        ``break_glass``), then one ``Result`` entry per prior shown.

        Raises:
            RecordError: The record failed or the entries could not be written; nothing is served.
        """
        with audited_transaction(self._db) as (session, head):
            row = session.execute(
                select(
                    Result.patient_id,
                    Result.facility,
                    Result.study_id,
                    Result.created_at,
                    Result.patient_age,
                    Result.patient_sex,
                    Study.study_date,
                )
                .outerjoin(Study, Result.study_id == Study.id)
                .where(Result.id == result_id)
            ).first()
            value: ViewerRead | None = None
            patient_id: str | None = None
            shown: list[tuple[PriorStudy, str]] = []
            if row is None:
                outcome = NOT_FOUND
            else:
                patient_id = row.patient_id
                ground = _scope.basis(
                    session, scope, patient_id=row.patient_id, owner=row.facility, patient_level=False
                )
                outcome = outcome_of(ground)
                if outcome in SERVED:
                    # The result as the API's read gives it (deliveries included), in this transaction.
                    result = self._results._fetch(session, result_id, deliveries=True)
                    if result is None:
                        outcome = NOT_FOUND
                    else:
                        priors = None
                        if isinstance(result, ImagingResult):
                            shown, older = _priors(session, scope, row, limit=limit)
                            priors = PriorStudies(studies=tuple(p for p, _o in shown), older=older)
                        feedback = _feedback.entries_in(session, result_id, reader=reader)
                        value = ViewerRead(
                            result=result,
                            feedback=feedback,
                            priors=priors,
                            study_date=row.study_date,
                            patient=_viewed_patient(session, scope, row),
                        )
            now = utcnow()
            entries = [
                _audit.columns_of(
                    audit,
                    resource_type="Result",
                    resource_id=result_id,
                    patient_id=patient_id,
                    outcome=outcome,
                    time=now,
                )  # fmt: skip
            ]
            entries += [
                _audit.columns_of(
                    audit,
                    resource_type="Result",
                    resource_id=prior.result_id,
                    patient_id=patient_id,
                    outcome=prior_outcome,
                    time=now,
                )  # fmt: skip
                for prior, prior_outcome in shown
            ]
            _audit.append_all_onto(session, head, entries)
        return Audited(outcome=outcome, value=value, patient_id=patient_id, resource_id=result_id)


def _day(study_date: str | None) -> datetime | None:
    """A study date (ISO or DICOM ``YYYYMMDD``) as midnight UTC of that day; None when absent or malformed."""
    text = (study_date or "").strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _viewed_patient(session: Session, scope: _scope.Scope, current: Any) -> ViewedPatient:
    """The patient's age and sex for the viewer's header, by the worklist's rule: a reader who may read the
    patient itself (its first facility, its sharing consent, a break-the-glass grant) sees the record's
    (the age at the study's date from the birth date, else at filing); any other reader of the result sees
    what the result's own facility sent with it (its age when filed), never another facility's record."""
    if _scope.basis(session, scope, patient_id=current.patient_id, owner=None, patient_level=True) is None:
        return ViewedPatient(age=current.patient_age, age_at="analysis", sex=current.patient_sex)
    birth_date, sex = session.execute(
        select(Patient.birth_date, Patient.sex).where(Patient.id == current.patient_id)
    ).one()
    on = _day(current.study_date)
    if on is None:
        return ViewedPatient(age=age_at(birth_date, current.created_at), age_at="analysis", sex=sex)
    return ViewedPatient(age=age_at(birth_date, on), age_at="study", sex=sex)


def _priors(
    session: Session, scope: _scope.Scope, current: Any, *, limit: int
) -> tuple[list[tuple[PriorStudy, str]], int]:
    """The prior studies of ``current``'s patient that the caller may read (newest first, at most
    ``limit``) with the outcome each one's entry is audited with, and how many older ones were left."""
    candidates = session.execute(
        select(Result.id, Result.study_id, Result.facility, Result.created_at, Study.study_date)
        .join(Study, Result.study_id == Study.id)
        .where(
            Result.patient_id == current.patient_id,
            Result.kind == "imaging",
            Result.study_id != current.study_id,
            _scope.results_visible(scope),
        )
        .order_by(Result.created_at.desc(), Result.id.desc())
    ).all()
    newest: dict[str, Any] = {}
    for candidate in candidates:
        newest.setdefault(candidate.study_id, candidate)  # newest result of each study first
    before = _dated(current.study_date, current.created_at)
    earlier = sorted(
        (c for c in newest.values() if _dated(c.study_date, c.created_at) < before),
        key=lambda c: _dated(c.study_date, c.created_at),
        reverse=True,
    )
    chosen = earlier[:limit]
    if not chosen:
        return [], 0
    ids = [c.id for c in chosen]
    loaded = {
        r.id: r
        for r in session.scalars(
            select(Result)
            .options(selectinload(Result.findings), selectinload(Result.study))
            .where(Result.id.in_(ids))
        )
    }
    verdicts: dict[str, dict[str, FeedbackVerdict]] = {rid: {} for rid in ids}
    for entry in session.scalars(
        select(Feedback).where(Feedback.result_id.in_(ids)).order_by(Feedback.created, Feedback.id)
    ):
        for v in entry.verdicts:  # oldest first: the newest verdict on a finding wins
            verdicts[entry.result_id][v["code"]] = FeedbackVerdict(
                code=v["code"], verdict=v["verdict"], correct_label=v.get("correct_label")
            )
    shown: list[tuple[PriorStudy, str]] = []
    for candidate in chosen:
        result = loaded[candidate.id]
        ground = _scope.basis(
            session, scope, patient_id=current.patient_id, owner=candidate.facility, patient_level=False
        )
        if ground is None:
            # Listed by the query, refused now: a break-the-glass grant that expired in between. Not shown
            # (and so not audited as shown); the list's own filter and this check read the same clock.
            continue
        prior = PriorStudy(
            result_id=result.id,
            study_date=candidate.study_date,
            created_at=result.created_at,
            priority=cast(Priority, result.priority),
            status=result.status,
            model=ModelInfo(
                name=result.model_name, version=result.model_version, synthetic=filed_synthetic(result)
            ),
            assessable=result.assessable,
            findings=filed_findings(result.findings),
            verdicts=verdicts[result.id],
        )
        shown.append((prior, outcome_of(ground)))
    return shown, len(earlier) - len(chosen)
