"""Shadow scoring in the record: what a ``challenger`` said about inputs the ``champion`` answered.

A shadow output is never a clinical result: it has no result id of its own, no FHIR resource, no
worklist line, no delivery. It is kept against the champion's result (``shadow_results``, migration
0009) so that the two versions can be compared on the hospital's own traffic, and against the readers'
verdicts on that result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column, selectinload, sessionmaker

from inference.record import _audit
from inference.record._engine import IMMEDIATE
from inference.record._errors import RecordError
from inference.record._models import Base, Feedback, Result
from inference.record._types import UTCDateTime, new_id, utcnow
from inference.record._views import TRIAGE_FEEDBACK_CODE

SHADOW_SUBJECT = "dxassist-shadow"
"""Audit subject of shadow filings (the process, not a person)."""
MAX_PAIRS = 20_000
"""Most recent pairs a comparison reads (memory stays bounded whatever the traffic)."""


class ShadowResult(Base):
    """One challenger's output on the input of one champion result (never shown, never sent)."""

    __tablename__ = "shadow_results"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"))
    kind: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(128))
    champion_version: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class ShadowScores:
    """One version's answer on one input, per finding code (triage: the code ``deterioration``).

    Attributes:
        version: The model version.
        probabilities: Calibrated probability per code.
        positive: Whether each code reached the version's own threshold (False when not assessable).
        thresholds: The version's operating threshold per code.
        assessable: False when the version's OOD guard refused the image (always True for triage).
    """

    version: str
    probabilities: Mapping[str, float]
    positive: Mapping[str, bool]
    thresholds: Mapping[str, float]
    assessable: bool = True


@dataclass(frozen=True)
class ShadowPair:
    """The champion's filed answer and the challenger's shadow answer on the same input.

    Attributes:
        result_id: The champion's result.
        champion: What the champion filed.
        challenger: What the challenger said.
        truth: The readers' label per code, where a reader gave a verdict (the latest verdict wins).
    """

    result_id: str
    champion: ShadowScores
    challenger: ShadowScores
    truth: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ShadowVersions:
    """A pair of versions of one model that were shadow-scored together, and how many inputs they share."""

    model_name: str
    champion_version: str
    challenger_version: str
    pairs: int
    last: datetime | None


def reader_truth(verdict: Mapping[str, Any], model_positive: bool) -> bool:
    """The label a reader's verdict gives a finding the model called ``model_positive``."""
    if verdict.get("verdict") == "correct":
        return bool(verdict.get("correct_label"))
    agreed = verdict.get("verdict") == "agree"
    return model_positive == agreed


def _champion_scores(result: Result) -> ShadowScores:
    if result.kind == "imaging":
        return ShadowScores(
            version=result.model_version,
            probabilities={f.code: float(f.probability) for f in result.findings},
            positive={f.code: bool(f.positive) for f in result.findings},
            thresholds={f.code: float(f.threshold) for f in result.findings},
            assessable=result.assessable,
        )
    risk = (result.payload or {}).get("risk", {})
    return ShadowScores(
        version=result.model_version,
        probabilities={TRIAGE_FEEDBACK_CODE: float(risk.get("probability", 0.0))},
        positive={TRIAGE_FEEDBACK_CODE: bool(risk.get("positive", False))},
        thresholds={TRIAGE_FEEDBACK_CODE: float(risk.get("threshold", 0.5))},
    )


def _shadow_scores(row: ShadowResult) -> ShadowScores:
    payload = row.payload or {}
    return ShadowScores(
        version=row.version,
        probabilities={k: float(v) for k, v in payload.get("probabilities", {}).items()},
        positive={k: bool(v) for k, v in payload.get("positive", {}).items()},
        thresholds={k: float(v) for k, v in payload.get("thresholds", {}).items()},
        assessable=bool(payload.get("assessable", True)),
    )


class ShadowResults:
    """The record's shadow outputs: filing them and reading them back as pairs with the champion.

    Args:
        sessions: The record's session factory (``Record.sessions``).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def save(
        self,
        *,
        result_id: str,
        model_name: str,
        version: str,
        sha256: str,
        probabilities: Mapping[str, float],
        positive: Mapping[str, bool],
        thresholds: Mapping[str, float],
        assessable: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """File a challenger's output on the input of ``result_id``, with its audit entry, in one transaction.

        Returns:
            True when filed; False when this version's output on that result was filed already, or the
            result no longer exists.

        Raises:
            RecordError: The database refused the write.
        """
        payload = {
            "probabilities": {k: float(v) for k, v in probabilities.items()},
            "positive": {k: bool(v) for k, v in positive.items()},
            "thresholds": {k: float(v) for k, v in thresholds.items()},
            "assessable": bool(assessable),
            **dict(extra or {}),
        }
        try:
            with self._sessions() as session, session.begin():
                session.connection(execution_options={IMMEDIATE: True})
                result = session.get(Result, result_id)
                if result is None:
                    return False
                exists = session.scalar(
                    select(ShadowResult.id).where(
                        ShadowResult.result_id == result_id, ShadowResult.version == version
                    )
                )
                if exists is not None:
                    return False
                row = ShadowResult(
                    id=new_id(),
                    result_id=result_id,
                    kind=result.kind,
                    model_name=model_name,
                    champion_version=result.model_version,
                    version=version,
                    sha256=sha256,
                    payload=payload,
                    created=utcnow(),
                )
                session.add(row)
                _audit.append(
                    session,
                    time=row.created,
                    subject=SHADOW_SUBJECT,
                    role="system",
                    facility=result.facility,
                    action="shadow:score",
                    resource_type="ShadowResult",
                    resource_id=row.id,
                    patient_id=result.patient_id,
                    outcome="success",
                    client=None,
                )
        except IntegrityError:
            return False  # a concurrent filing of the same output won the race
        except SQLAlchemyError as e:
            raise RecordError("The shadow output could not be stored.") from e
        return True

    def versions(self, *, model_name: str) -> list[ShadowVersions]:
        """Each (champion, challenger) pair of versions of ``model_name`` shadow-scored, newest first."""
        with self._sessions() as session:
            rows = session.execute(
                select(
                    ShadowResult.champion_version,
                    ShadowResult.version,
                    func.count(ShadowResult.id),
                    func.max(ShadowResult.created),
                )
                .where(ShadowResult.model_name == model_name)
                .group_by(ShadowResult.champion_version, ShadowResult.version)
            ).all()
        found = [
            ShadowVersions(model_name, str(champion), str(challenger), int(n), last)
            for champion, challenger, n, last in rows
        ]
        return sorted(found, key=lambda v: (v.last is not None, v.last), reverse=True)

    def pairs(
        self,
        *,
        model_name: str,
        champion_version: str,
        challenger_version: str,
        limit: int = MAX_PAIRS,
    ) -> list[ShadowPair]:
        """The most recent ``limit`` inputs both versions answered, with the readers' labels where given."""
        with self._sessions() as session:
            rows: Sequence[ShadowResult] = session.scalars(
                select(ShadowResult)
                .where(
                    ShadowResult.model_name == model_name,
                    ShadowResult.champion_version == champion_version,
                    ShadowResult.version == challenger_version,
                )
                .order_by(ShadowResult.created.desc(), ShadowResult.id)
                .limit(limit)
            ).all()
            ids = [row.result_id for row in rows]
            results = (
                {
                    r.id: r
                    for r in session.scalars(
                        select(Result).where(Result.id.in_(ids)).options(selectinload(Result.findings))
                    )
                }
                if ids
                else {}
            )
            verdicts: dict[str, dict[str, Mapping[str, Any]]] = {}
            if ids:
                for fb in session.scalars(
                    select(Feedback)
                    .where(Feedback.result_id.in_(ids))
                    .order_by(Feedback.created, Feedback.id)
                ):
                    for verdict in fb.verdicts or []:
                        verdicts.setdefault(fb.result_id, {})[str(verdict.get("code"))] = verdict
            pairs = []
            for row in rows:
                result = results.get(row.result_id)
                if result is None:
                    continue
                champion = _champion_scores(result)
                truth = {
                    code: reader_truth(verdict, champion.positive.get(code, False))
                    for code, verdict in verdicts.get(row.result_id, {}).items()
                    if code in champion.positive
                }
                pairs.append(
                    ShadowPair(
                        result_id=row.result_id,
                        champion=champion,
                        challenger=_shadow_scores(row),
                        truth=truth,
                    )
                )
        return pairs
