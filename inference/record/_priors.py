"""The viewer's read: one result, the reader's verdicts on it, and the patient's prior studies and recent
vital-signs triage results, authorised, read and audited in one transaction.

A reader compares a film with the patient's earlier ones. The priors are the patient's other studies
dated before this one, each by its newest imaging result that the reader may read (the access rules of
the worklist: the reader's facility, the patient's sharing consent, the reader's break-the-glass grant),
newest first and bounded. Each prior shown is a read of that result: one ``Result`` entry per prior, in the
transaction (and after the entry) of the page's own read, with its own ground (``success`` or
``break_glass``). The patient's recent vital-signs triage results beside a film follow the same rules:
those measured up to the film (the record keeps no acquisition time: see :func:`_film_time`), the newest
measurements first, bounded, each shown audited the same way; those measured after it are only counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from inference.record import _audit, _feedback, _scope
from inference.record._database import Database
from inference.record._inputs import AuditIn
from inference.record._models import Feedback, Patient, Result, Study, VitalsObservation
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


TRIAGE_SHOWN: Final = 5
"""The viewer lists at most this many of the patient's vital-signs triage results beside a film."""


@dataclass(frozen=True, slots=True)
class RecentTriage:
    """One vital-signs triage result of the patient, as listed beside a film.

    Attributes:
        result_id: The result (the viewer links to it).
        observed_at: When the vital signs were measured.
        priority: The result's triage level.
        at_risk: The model's deterioration risk is at or above its threshold.
        news2_total: The NEWS2 total, else None (not computed).
        news2_band: The NEWS2 band (``low``, ``low_medium``, ``medium``, ``high``), else None.
    """

    result_id: str
    observed_at: datetime
    priority: Priority
    at_risk: bool
    news2_total: int | None
    news2_band: str | None


@dataclass(frozen=True, slots=True)
class RecentTriageResults:
    """The triage results measured up to the film, newest measurement first, as the viewer shows them.

    Attributes:
        results: Those shown (measured up to the film).
        older: How many older ones (up to the film) the reader may read were left out.
        later: How many the reader may read were measured after the film (never shown).
        film_at: The film's place in time: its analysis (``film_time`` ``analysis``), else the start of
            its study day in the server's time zone (``study_date``).
        film_time: ``analysis``: the result was analysed on its study's day, or its study has no date (the
            record keeps no acquisition time, so the analysis stands for the film; measured up to it);
            ``study_date``: analysed on a later day (measured before the end of the study's day).
    """

    results: tuple[RecentTriage, ...]
    older: int
    later: int
    film_at: datetime
    film_time: Literal["analysis", "study_date"]


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
        triage: The patient's recent vital-signs triage results (None for a vital-signs result).
        others: The other readers' feedback on it, oldest first (a second reading, a colleague's
            disagreement: the reader sees them before giving a verdict).
    """

    result: AnyResult
    feedback: list[FeedbackEntry]
    priors: PriorStudies | None
    study_date: str | None = None
    patient: ViewedPatient | None = None
    triage: RecentTriageResults | None = None
    others: tuple[FeedbackEntry, ...] = ()


def _dated(study_date: str | None, created_at: datetime) -> tuple[str, datetime]:
    """A study's place in time: its date, else the day its result was filed; then the filing time."""
    return (study_date or created_at.date().isoformat(), created_at)


class PriorReads:
    """The viewer's audited read of a result with the patient's prior studies."""

    def __init__(self, db: Database, results: Results) -> None:
        self._db = db
        self._results = results

    def read_with_priors(
        self,
        *,
        result_id: str,
        reader: str,
        scope: _scope.Scope,
        audit: AuditIn,
        limit: int = PRIORS_SHOWN,
        triage_limit: int = TRIAGE_SHOWN,
    ) -> Audited[ViewerRead]:
        """One result as ``results.read`` reads it (with its deliveries), and, for an
        imaging result, the patient's prior studies (at most ``limit``) and vital-signs triage results
        measured up to the film (at most ``triage_limit``) the caller may read, in the transaction of the
        read's entries: the result's (``not_found``, ``denied``, or ``success`` / ``break_glass``), then
        one ``Result`` entry per prior shown, then one per triage result shown.

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
            shown: list[tuple[str, str]] = []  # (result id, outcome) of each other result shown
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
                        triage = None
                        if isinstance(result, ImagingResult):
                            listed, older = _priors(session, scope, row, limit=limit)
                            priors = PriorStudies(studies=tuple(p for p, _o in listed), older=older)
                            vitals, triage = _triage(session, scope, row, limit=triage_limit)
                            shown = [(p.result_id, o) for p, o in listed] + [
                                (t.result_id, o) for t, o in vitals
                            ]
                        everyone = _feedback.entries_in(session, result_id)
                        value = ViewerRead(
                            result=result,
                            feedback=[entry for entry in everyone if entry.reader == reader],
                            others=tuple(entry for entry in everyone if entry.reader != reader),
                            priors=priors,
                            study_date=row.study_date,
                            patient=_viewed_patient(session, scope, row),
                            triage=triage,
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
                    resource_id=shown_id,
                    patient_id=patient_id,
                    outcome=shown_outcome,
                    time=now,
                )  # fmt: skip
                for shown_id, shown_outcome in shown
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


def _film_time(current: Any) -> tuple[datetime, datetime, Literal["analysis", "study_date"]]:
    """Where ``current``'s film sits in time for its vital signs: (its time, the end of what is "up to
    the film", which). The record keeps no acquisition time: a result analysed on its study's day, or of
    a study without a date, is placed at its analysis (the film was taken before it); one analysed on a
    later day (a study sent late) at its study day, whose end in the server's time zone (the site's, as
    the DICOM writers take it) bounds it."""
    analysed: datetime = current.created_at
    day = _day(current.study_date)
    if day is not None:
        # The study's date is a local date: its day ends at the next local midnight.
        start = datetime.combine(day.date(), time()).astimezone().astimezone(UTC)
        end = datetime.combine(day.date() + timedelta(days=1), time()).astimezone().astimezone(UTC)
        if end <= analysed:
            return start, end, "study_date"
    return analysed, analysed + timedelta(microseconds=1), "analysis"


def _triage(
    session: Session, scope: _scope.Scope, current: Any, *, limit: int
) -> tuple[list[tuple[RecentTriage, str]], RecentTriageResults]:
    """The vital-signs triage results of ``current``'s patient that the caller may read (by the priors'
    rules) measured up to its film (:func:`_film_time`; newest measurement first, at most ``limit``) with
    the outcome each one's entry is audited with, and the panel: those, how many older ones were left and
    how many were measured after the film (never shown, so not audited)."""
    film_at, until, film_time = _film_time(current)
    of_patient = (
        Result.patient_id == current.patient_id,
        Result.kind == "triage",
        _scope.results_visible(scope),
    )
    measured = (
        select(func.count())
        .select_from(Result)
        .join(VitalsObservation, Result.vitals_id == VitalsObservation.id)
    )
    total = session.scalar(measured.where(*of_patient, VitalsObservation.observed_at < until)) or 0
    later = session.scalar(measured.where(*of_patient, VitalsObservation.observed_at >= until)) or 0
    rows = session.execute(
        select(Result, VitalsObservation.observed_at)
        .join(VitalsObservation, Result.vitals_id == VitalsObservation.id)
        .where(*of_patient, VitalsObservation.observed_at < until)
        .order_by(VitalsObservation.observed_at.desc(), Result.created_at.desc(), Result.id.desc())
        .limit(limit)
    ).all()
    shown: list[tuple[RecentTriage, str]] = []
    for result, observed_at in rows:
        ground = _scope.basis(
            session, scope, patient_id=current.patient_id, owner=result.facility, patient_level=False
        )
        if ground is None:
            continue  # a break-the-glass grant that expired since the query: not shown, not audited
        news2: Mapping[str, Any] = result.payload.get("news2") or {}
        entry = RecentTriage(
            result_id=result.id,
            observed_at=observed_at,
            priority=cast(Priority, result.priority),
            at_risk=bool(result.payload["risk"]["positive"]),
            news2_total=news2.get("total"),
            news2_band=news2.get("band"),
        )
        shown.append((entry, outcome_of(ground)))
    panel = RecentTriageResults(
        results=tuple(t for t, _o in shown),
        older=max(total - len(rows), 0),
        later=later,
        film_at=film_at,
        film_time=film_time,
    )
    return shown, panel


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
