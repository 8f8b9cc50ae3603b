"""Readers' feedback: verdicts per finding, stored with the exact model they judged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from inference.record import _audit, _scope
from inference.record._database import Database
from inference.record._errors import InvalidFeedback, NotFound
from inference.record._inputs import AuditIn, Verdict
from inference.record._models import Feedback, Finding, Result
from inference.record._reads import Changed, Target, write_audited
from inference.record._result_types import FeedbackEntry, FeedbackVerdict, ModelInfo
from inference.record._types import new_id, utcnow
from inference.record._views import TRIAGE_FEEDBACK_CODE

VERDICTS: Final[tuple[str, ...]] = ("agree", "disagree", "correct")


class FeedbackLog:
    """Readers' verdicts on results."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(
        self,
        *,
        result_id: str,
        reader: str,
        verdicts: Sequence[Verdict],
        close: bool = True,
        audit: AuditIn | None = None,
    ) -> str:
        """Store a reader's verdicts with the exact model of the result and mark the result reviewed.

        With ``close=False`` the result stays open (the web viewer records a verdict per finding, and the
        reader closes the result with ``Record.results.mark_read``). ``audit`` (who gives the feedback)
        is written to the audit trail in the same transaction (outcome ``success``): the feedback is
        stored with its entry or not at all.

        Imaging results take one verdict per finding code; triage results take the code
        ``deterioration``. ``correct`` needs ``correct_label`` (the label the reader says is right).

        Returns:
            The feedback id.

        Raises:
            NotFound: no such result.
            InvalidFeedback: an unknown code or verdict, a repeated code, or no verdict at all.
            RecordError: The audit entry could not be written (nothing was stored).
        """
        _check(verdicts)

        def work(session: Session) -> str:
            result = session.get(Result, result_id)
            if result is None:
                raise NotFound("No result has this id.")
            feedback_id = _store(session, result, reader=reader, verdicts=verdicts, close=close)
            if audit is not None:
                _audit.append_change(
                    session,
                    audit,
                    resource_type="Result",
                    resource_id=result.id,
                    patient_id=result.patient_id,
                )
            return feedback_id

        return self._db.write(work)

    def save_checked(
        self,
        *,
        result_id: str,
        reader: str,
        verdicts: Sequence[Verdict],
        close: bool = True,
        scope: _scope.Scope,
        audit: AuditIn,
    ) -> Changed[str]:
        """:meth:`save`, if the caller may change the result (its facility's own, or an admin's: sharing
        consent and break-the-glass open a result for reading only), the check, the feedback and its
        audit entry in one transaction (:func:`inference.record._reads.write_audited`): ``not_found`` or
        ``denied`` (audited, nothing stored), or ``success`` with the feedback id.

        Raises:
            InvalidFeedback: An unknown code or verdict, a repeated code, or no verdict at all, from a
                caller who may change the result (nothing stored, no entry).
            RecordError: The record failed or the audit entry could not be written (nothing stored).
        """

        def change(session: Session, _target: Target) -> str:
            # Judged once the caller may change the result, as before the check shared its transaction:
            # a caller refused is audited ``denied`` whatever it sent.
            _check(verdicts)
            result = session.get(Result, result_id)
            if result is None:  # located in this very transaction
                raise NotFound("No result has this id.")
            return _store(session, result, reader=reader, verdicts=verdicts, close=close)

        return write_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Result",
            resource_id=result_id,
            locate=lambda session: _result_target(session, result_id),
            change=change,
        )

    def close_checked(self, *, result_id: str, scope: _scope.Scope, audit: AuditIn) -> Changed[None]:
        """Mark a result reviewed (it leaves the worklist) as ``Record.results.mark_read`` does, if the
        caller may change it (as :meth:`save_checked`), the check, the change and its audit entry (outcome
        ``read``) in one transaction: ``not_found`` or ``denied`` (audited, the result stays open).

        Raises:
            RecordError: The record failed or the audit entry could not be written (the result stays
                open).
        """

        def change(session: Session, _target: Target) -> None:
            result = session.get(Result, result_id)
            if result is None:  # located in this very transaction
                raise NotFound("No result has this id.")
            result.status = "reviewed"

        return write_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type="Result",
            resource_id=result_id,
            locate=lambda session: _result_target(session, result_id),
            change=change,
            outcome="read",
        )

    def for_result(self, *, result_id: str) -> list[FeedbackEntry]:
        """Every feedback on a result, oldest first, with the model name and version it judged."""
        with self._db.sessions() as session:
            return entries_in(session, result_id)


def _check(verdicts: Sequence[Verdict]) -> None:
    """Refuse feedback that no result takes (see :meth:`FeedbackLog.save`).

    Raises:
        InvalidFeedback: An unknown verdict, a repeated code, a ``correct`` without its label, or none.
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


def _store(session: Session, result: Result, *, reader: str, verdicts: Sequence[Verdict], close: bool) -> str:
    """Add ``reader``'s verdicts on ``result`` (with the exact model it judged) in ``session``'s
    transaction, and close the result unless told not to. Returns the feedback id.

    Raises:
        InvalidFeedback: A code the result does not have.
    """
    codes = [verdict.code for verdict in verdicts]
    if result.kind == "imaging":
        known = set(session.scalars(select(Finding.code).where(Finding.result_id == result.id)))
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
        verdicts=[{"code": v.code, "verdict": v.verdict, "correct_label": v.correct_label} for v in verdicts],
        model_name=result.model_name,
        model_version=result.model_version,
        created=utcnow(),
    )
    session.add(feedback)
    if close:
        result.status = "reviewed"
    return feedback.id


def _result_target(session: Session, result_id: str) -> Target | None:
    """A result as the access rules judge it (its patient and owning facility); None: no such result."""
    row = session.execute(select(Result.patient_id, Result.facility).where(Result.id == result_id)).first()
    return None if row is None else Target(patient_id=row.patient_id, owner=row.facility)


def entries_in(session: Session, result_id: str, *, reader: str | None = None) -> list[FeedbackEntry]:
    """The feedback on a result (only ``reader``'s, when given), oldest first, read in ``session``'s
    transaction (an audited read's: :func:`inference.record._reads.read_audited`)."""
    query = select(Feedback).where(Feedback.result_id == result_id)
    if reader is not None:
        query = query.where(Feedback.reader == reader)
    rows = session.scalars(query.order_by(Feedback.created, Feedback.id))
    return [
        FeedbackEntry(
            feedback_id=row.id,
            result_id=row.result_id,
            reader=row.reader,
            verdicts=tuple(
                FeedbackVerdict(code=v["code"], verdict=v["verdict"], correct_label=v.get("correct_label"))
                for v in row.verdicts
            ),
            model=ModelInfo(name=row.model_name, version=row.model_version),
            created=row.created,
        )
        for row in rows
    ]
