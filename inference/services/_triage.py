"""Vital-signs triage: validate → NEWS2 → score → explain → prioritise → file → public result."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from inference.explain import choose_language, triage_rationale
from inference.record import PatientIn, TriageIntake, TriageResultIn, request_keys
from inference.security import scope_for
from inference.services import _warnings
from inference.services._access import audit_entry
from inference.services._consent import refuse_objection
from inference.services._context import Actor, Context, db
from inference.services._filing import file_result
from inference.services._identity import identify
from inference.services._imaging import (
    ADULT_AGE_YEARS,
    Outcome,
    audit_paediatric,
    model_ref,
    under_age_on_file,
    years_between,
)
from inference.services._shadow import offer_vitals
from inference.services._trend import series_trend, trend_window
from inference.triage import (
    FEATURES,
    VitalSigns,
    VitalsRejected,
    compute_news2,
    encode_features,
    model_inputs,
)
from inference.vocabulary import LANGUAGES

logger = logging.getLogger(__name__)


def _paediatric_patient() -> VitalsRejected:
    return VitalsRejected(
        "paediatric_patient",
        f"The patient was under {ADULT_AGE_YEARS} when the signs were measured (patient.birth_date, or the "
        "patient's birth date on file, and observed_at); NEWS2 is not validated for children and the "
        "triage model was made for adults. Assess the patient with a paediatric early warning score "
        "instead.",
        field="patient.birth_date",
    )


def refuse_paediatric(patient: PatientIn, observed: datetime) -> None:
    """Refuse the signs of a patient under :data:`ADULT_AGE_YEARS` when they were measured, by the birth
    date sent (none sent: the birth date on file decides, :func:`_refuse_paediatric_on_file`).

    NEWS2 is not validated for children (a paediatric early warning score is used; an infant's normal
    heart and respiratory rates score 3 on NEWS2) and the triage model was trained on adults only (its
    model card).

    Raises:
        VitalsRejected: ``paediatric_patient`` (422); the message names neither the age nor a date.
    """
    if not patient.birth_date:
        return
    birth = date.fromisoformat(patient.birth_date)
    if years_between(birth, observed.astimezone(UTC).date()) < ADULT_AGE_YEARS:
        raise _paediatric_patient()


async def _refuse_paediatric_on_file(
    ctx: Context, actor: Actor, *, intake: TriageIntake, observed: datetime
) -> None:
    """Refuse the signs of a patient the birth date on file (read with the consent) makes a child when they
    were measured, whatever birth date was sent (the record keeps its own, so a child's signs sent without
    one, or with another, would be scored). The refusal is audited (:func:`audit_paediatric`).

    Raises:
        VitalsRejected: ``paediatric_patient`` (422), as :func:`refuse_paediatric`.
    """
    found = intake.consent
    if found is None or not under_age_on_file(intake.birth_date, observed.astimezone(UTC).date()):
        return
    refused = _paediatric_patient()
    await audit_paediatric(ctx, actor, patient_id=found.patient_id, action="vitals:submit", code=refused.code)
    raise refused


async def analyse_vitals(
    *,
    ctx: Context,
    actor: Actor,
    patient: PatientIn,
    vitals: Mapping[str, Any],
    observed_at: datetime | None,
    accept_language: str | None,
    idempotency_key: str | None = None,
) -> Outcome:
    """Score one set of vital signs with NEWS2 (the measured part when incomplete), file and return it.

    SpO2 charted on NEWS2 Scale 2 is scored by NEWS2 on Scale 2 and withheld from the triage model, which
    knows Scale 1 only (:func:`inference.triage.model_inputs`); the result's warnings say so.

    Args:
        ctx: The process's engines.
        actor: Who sends the vital signs; their facility owns the result.
        patient: The patient (``identifier`` required).
        vitals: Vital-sign fields keyed as in the request (missing or None: not measured).
        observed_at: When measured (now when None).
        accept_language: The caller's Accept-Language header (for the rationale).
        idempotency_key: The caller's ``Idempotency-Key`` header. A request already answered (the same
            key, or the same reading: same facility, patient, ``observed_at`` and values) files nothing
            and returns the result filed first (``created`` false).

    Raises:
        VitalsRejected: A value is of the wrong type, implausible or inconsistent; nothing was measured;
            the patient was a child when measured.
        ConsentObjection: The patient objected to AI processing (nothing is scored or filed).
        ModelUnavailable: No triage model is loaded.
        IdempotencyKeyReused: The sender used this key before for a request with other content.
    """
    signs = VitalSigns.from_mapping(vitals)
    patient = identify(ctx, actor, patient)
    received = datetime.now(UTC)
    observed = observed_at or received
    since, until = trend_window(ctx, observed)
    # One round trip before scoring (the consent and birth date on file, and the earlier observations the
    # trend is made of), one to file: the request's whole database budget.
    intake = await db(
        ctx.record.results.triage_intake,
        identifier=patient.identifier,
        issuer=patient.issuer,
        since=since,
        until=until,
        scope=scope_for(actor.principal),
        # Another facility's observations in the trend are a disclosure of its data: audited as a read.
        audit=audit_entry(actor, action="results:read"),
    )
    await refuse_objection(ctx, actor, found=intake.consent, action="vitals:submit")
    principal = actor.principal
    keys = request_keys(
        subject=principal.subject,
        facility=principal.facility,
        patient=patient,
        observed_at=observed_at,
        vitals=signs.as_dict(),
        idempotency_key=idempotency_key,
    )
    served = ctx.host.triage
    # Checked once the request is otherwise answerable (an objection is still a 409, no model a 503).
    signs.require_measured()
    refuse_paediatric(patient, observed)
    await _refuse_paediatric_on_file(ctx, actor, intake=intake, observed=observed)
    # SpO2 on Scale 2 is withheld from the model (it knows Scale 1 only); the result says so.
    model_signs, withheld = model_inputs(signs)
    values, present = encode_features(model_signs)
    scores = await ctx.host.score_vitals(values, present, model=served)
    news2 = compute_news2(signs)
    missing_inputs = [name for name, flag in zip(FEATURES, present, strict=True) if not flag]

    trend = series_trend(
        ctx,
        earlier_rows=intake.series,
        observed_at=observed,
        news2=news2,
        probability=float(scores.probability),
        positive=bool(scores.positive),
        model_version=served.version,
    )
    deteriorating = trend is not None and trend.deteriorating

    warnings = [_warnings.training(served)]
    if not news2.complete:
        warnings.append(_warnings.news2_missing(list(news2.missing)))
    if withheld:
        warnings.append(_warnings.spo2_withheld(served.name, served.version))
    not_measured = [name for name in missing_inputs if name not in withheld]
    if not_measured:
        warnings.append(_warnings.triage_missing(not_measured))
    if trend is not None and deteriorating:
        warnings.append(
            _warnings.deteriorating(
                trend.observations,
                trend.hours,
                trend.news2_change,
                trend.risk_change,
                raised=ctx.policy.deteriorating_raise > 0,
            )
        )
    priority = ctx.policy.triage_priority(
        news2.band,
        scores.positive,
        red_score=news2.red_score,
        complete=news2.complete,
        deteriorating=deteriorating,
    )

    # The model contract gives 0 to an unmeasured sign; writing 0.0 here as well keeps a -0.0 or a
    # rounding residue of the runtime from ever reaching a reader as a contribution of a sign not sent.
    contributions = {
        name: (0.0 if name in missing_inputs else float(value))
        for name, value in scores.contributions.items()
    }
    ranked = sorted(contributions.items(), key=lambda item: -item[1])
    rationale: dict[str, str] = {
        lang: triage_rationale(
            scores.probability,
            scores.positive,
            ranked,
            news2.total,
            news2.band,
            lang,
            synthetic=served.synthetic,
            news2_complete=news2.complete,
            deteriorating_hours=trend.hours if trend is not None and deteriorating else None,
        )
        for lang in LANGUAGES
    }
    meta = served.triage_meta
    data = TriageResultIn(
        patient=patient,
        observed_at=observed,
        vitals=signs.as_dict(),
        model=model_ref(served),
        probability=float(scores.probability),
        positive=bool(scores.positive),
        threshold=float(meta.threshold),
        logit=float(scores.logit),
        intercept=float(scores.intercept),
        contributions=contributions,
        missing=tuple(missing_inputs),
        news2=news2.as_dict(),
        trend=None if trend is None else trend.as_dict(),
        request=keys,
        priority=priority,
        warnings=tuple(warnings),
        rationale=rationale,
    )
    stored = await file_result(ctx, actor, data=data, action="vitals:submit")
    logger.info(
        "triage result filed" if stored.created else "triage request already answered; nothing filed",
        extra={
            "event": "triage_result" if stored.created else "triage_duplicate",
            "result_id": stored.result_id,
            "model": served.name,
            "model_version": served.version,
            "priority": priority,
        },
    )
    if stored.result is None:  # the record reads every filed result back in its transaction
        raise RuntimeError("The result just filed could not be read back.")
    if stored.created:  # the challenger sees the input after the champion's answer is filed
        offer_vitals(ctx, result_id=stored.result_id, champion=served, values=values, present=present)
    return Outcome(result=stored.result, created=stored.created, language=choose_language(accept_language))
