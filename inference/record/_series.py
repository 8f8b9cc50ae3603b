"""A patient's series of triage observations, read for the trend of a new one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from inference.record import _consent
from inference.record._consent import ConsentState
from inference.record._models import Patient, Result, VitalsObservation, normalise_issuer
from inference.record._scope import Scope, results_visible
from inference.record._types import as_utc
from inference.record._views import VITAL_FIELDS

#: Most earlier observations read for one trend: a window of 24 h at one observation a minute is 1440;
#: bounding the read keeps memory bounded whatever a sender posted.
MAX_SERIES: Final = 2000


def triage_series(
    session: Session,
    *,
    identifier: str,
    issuer: str | None,
    since: datetime,
    until: datetime,
    scope: Scope | None = None,
) -> list[dict[str, Any]]:
    """The patient's triage observations with ``since <= observed_at < until``, oldest first.

    With ``scope``, only observations of results the caller may read count (another facility's vital
    signs must not leak into a trend through its counts and changes).

    Each item: ``observed_at`` (aware, UTC), ``news2_total``, ``news2_complete``, ``probability``,
    ``positive``, ``model_version`` (of the triage model that scored it), ``vitals`` (``(name, value)``
    per measured sign, in the order of ``VITAL_FIELDS``: what tells one reading sent twice). A result
    filed before NEWS2 was reported for incomplete observations (``news2`` null) counts as an incomplete
    score of 0, which the trend rule never reads as a baseline.
    """
    return [item for item, _owner in _series_of(session, identifier, issuer, since, until, scope)]


def _series_of(
    session: Session,
    identifier: str,
    issuer: str | None,
    since: datetime,
    until: datetime,
    scope: Scope | None,
) -> list[tuple[dict[str, Any], str | None]]:
    """:func:`triage_series`, each item with the facility owning its result."""
    query = (
        select(VitalsObservation, Result.payload, Result.model_version, Result.facility)
        .join(Result, Result.vitals_id == VitalsObservation.id)
        .join(Patient, Patient.id == VitalsObservation.patient_id)
        .where(
            Patient.identifier == identifier,
            Patient.issuer == normalise_issuer(issuer),
            Result.kind == "triage",
            VitalsObservation.observed_at >= as_utc(since),
            VitalsObservation.observed_at < as_utc(until),
        )
    )
    if scope is not None:
        query = query.where(results_visible(scope))
    rows = session.execute(query.order_by(VitalsObservation.observed_at.desc()).limit(MAX_SERIES)).all()
    series = []
    for observation, payload, model_version, owner in reversed(rows):
        news2 = payload.get("news2") or {}
        item = (
            {
                "observed_at": as_utc(observation.observed_at),
                "news2_total": int(news2.get("total", 0)),
                "news2_complete": bool(news2) and bool(news2.get("complete", True)),
                "probability": float(payload["risk"]["probability"]),
                "positive": bool(payload["risk"]["positive"]),
                "model_version": str(model_version),
                "vitals": tuple(
                    (name, getattr(observation, name))
                    for name in VITAL_FIELDS
                    if getattr(observation, name) is not None
                ),
            },
            owner,
        )
        series.append(item)
    return series


@dataclass(frozen=True)
class TriageIntake:
    """What scoring a new triage observation needs from the record, read in one transaction.

    Attributes:
        consent: The patient's consent; None for a patient the record does not know.
        series: The patient's earlier observations in the trend window (see :func:`triage_series`);
            empty when the patient objected to AI processing (nothing of theirs is read further).
    """

    consent: ConsentState | None
    series: list[dict[str, Any]]
    others: frozenset[str] = frozenset()
    """The facilities other than the reader's whose observations are in :attr:`series` (read on the
    patient's sharing consent or the reader's break-the-glass grant: a disclosure to audit)."""
    birth_date: str | None = None
    """The patient's birth date on file (ISO; None: unknown patient, or none on file), which the age check
    reads beside the one sent."""

    @property
    def ai_processing_allowed(self) -> bool:
        """False when the patient objected to AI processing."""
        return self.consent is None or self.consent.ai_processing


def triage_intake(
    session: Session,
    *,
    identifier: str,
    issuer: str | None,
    since: datetime,
    until: datetime,
    scope: Scope | None = None,
) -> TriageIntake:
    """The patient's consent and birth date on file and, unless they objected, their earlier observations
    (one session)."""
    found = _consent.with_birth_date(session, identifier, issuer)
    if found is None:  # an unknown patient has no earlier observation
        return TriageIntake(consent=None, series=[])
    consent, birth_date = found
    if not consent.ai_processing:
        return TriageIntake(consent=consent, series=[], birth_date=birth_date)
    rows = _series_of(session, identifier, issuer, since, until, scope)
    reader = None if scope is None else scope.facility
    others = frozenset(owner for _item, owner in rows if owner is not None and owner != reader)
    return TriageIntake(
        consent=consent, series=[item for item, _owner in rows], others=others, birth_date=birth_date
    )
