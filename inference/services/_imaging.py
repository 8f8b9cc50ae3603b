"""Chest radiograph analysis: decode → :func:`inference.analysis.analyse` → prioritise → file → public result.

Heatmaps are not drawn here: the result keeps the analysis's display rendering and CAMs, and overlays are
drawn when first asked for (:mod:`inference.services._results`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Final

from inference.analysis import ImageTooSmall, ImageUnusable, analyse, observe_stage
from inference.dicom import (
    DicomRejected,
    DicomUnsupportedContent,
    Instance,
    Study,
    frontal_alternatives,
    frontal_rank,
    is_lateral,
    read_study,
)
from inference.errors import InferenceError
from inference.explain import choose_language, imaging_rationale
from inference.record import (
    AnalysedStudy,
    AnyResult,
    FindingIn,
    ImagingResult,
    ImagingResultIn,
    InstanceIn,
    ModelRef,
    PatientIn,
    RenderingData,
    StoredResult,
)
from inference.security import scope_for
from inference.services import _warnings
from inference.services._access import audit, audit_entry
from inference.services._consent import refuse_objection
from inference.services._context import Actor, Context, db
from inference.services._deliveries import discard_spool, outputs_owed, prepare_outputs, with_build_warning
from inference.services._drift import observe_drift
from inference.services._filing import file_result
from inference.services._identity import identify
from inference.services._shadow import offer_study, training_input
from inference.vocabulary import LANGUAGES, finding_display

if TYPE_CHECKING:
    from inference.analysis import Analysis
    from inference.runtime import ServedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """A filed result and what became of the request.

    Attributes:
        result: The typed result (an imaging one with its ``deliveries``); the API makes its JSON.
        created: Whether this request filed it (False: it was already filed).
        language: The language its rationale is shown in (from the caller's Accept-Language).
    """

    result: AnyResult
    created: bool
    language: str = "en"


ADULT_AGE_YEARS: Final = 18
"""Youngest age at the study the imaging model answers for (its model card: paediatric studies are out of
scope; a child's heart is normally larger against the chest, so adult thresholds would call cardiomegaly)."""
_PATIENT_AGE = re.compile(r"^(\d{3})([DWMY])$")  # DICOM AS: 3 digits and a unit
_DAYS_A_YEAR = 365.2425


def years_between(birth: date, on: date) -> int:
    """Whole years from ``birth`` to ``on`` (an age on ``on``)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_at_study(instance: Instance) -> int | None:
    """The patient's age in whole years at the study, as its header says; None when it does not say.

    From Patient's Birth Date and Study Date; without a usable birth date, or without a study date (or with
    one before the birth date), Patient's Age (the age at the study; ``018M`` is 1 year), but never more
    than the age today by the birth date: the study was taken at the latest today, so a birth date that
    makes the patient a child today makes them one at the study, whatever Patient's Age says. With a birth
    date but neither, today's age.
    """
    birth = date.fromisoformat(instance.patient.birth_date) if instance.patient.birth_date else None
    on = date.fromisoformat(instance.study_date) if instance.study_date else None
    if birth is not None and on is not None and birth <= on:
        return years_between(birth, on)
    today = datetime.now(UTC).date()
    bound = years_between(birth, today) if birth is not None and birth <= today else None
    match = _PATIENT_AGE.match(str(instance.header.get("PatientAge", "") or "").strip())
    if match is None:
        return bound
    count, unit = int(match.group(1)), match.group(2)
    if unit == "Y":
        age = count
    elif unit == "M":
        age = count // 12
    else:  # days and weeks in calendar years (52 weeks are 364 days: 936-939W are under 18 years)
        age = int(count * (7 if unit == "W" else 1) / _DAYS_A_YEAR)
    return age if bound is None else min(age, bound)


def under_age_on_file(birth_date: str | None, on: date | None) -> bool:
    """Whether the birth date on file (ISO; None: none) makes the patient under :data:`ADULT_AGE_YEARS` on
    ``on`` (the study's or the observation's date).

    Without ``on``, or with one before that birth date (the sender's date and the record's disagree), the
    age today decides: the age at the study or observation was at most that.
    """
    if not birth_date:
        return False
    try:
        birth = date.fromisoformat(birth_date)
    except ValueError:  # the record keeps ISO dates only; an unreadable one says nothing
        return False
    today = datetime.now(UTC).date()
    when = on if on is not None and birth <= on else today
    return birth <= when and years_between(birth, when) < ADULT_AGE_YEARS


async def audit_paediatric(ctx: Context, actor: Actor, *, patient_id: str, action: str, code: str) -> None:
    """The audit entry of a refusal that rests on the birth date on file: the answer tells the sender
    something the record holds of the patient (as a consent objection's does), so it is on the trail
    under the patient, for the patient's facility's auditor."""
    await audit(
        ctx,
        actor,
        action=action,
        outcome=code,
        resource_type="Patient",
        resource_id=patient_id,
        patient_id=patient_id,
    )


def _paediatric_study() -> DicomUnsupportedContent:
    return DicomUnsupportedContent(
        "paediatric_study",
        f"The patient was under {ADULT_AGE_YEARS} at the time of the study (Patient's Birth Date and "
        "Study Date, or Patient's Age, or the patient's birth date on file); the imaging model was made for "
        "adults' chest radiographs and does not answer for children's. Read the study without it.",
    )


def refuse_paediatric(instance: Instance) -> None:
    """Refuse a study of a patient under :data:`ADULT_AGE_YEARS` by its header (a header without an age is
    analysed; the birth date on file is checked with the consent, :func:`_cleared`).

    Raises:
        DicomRejected: ``paediatric_study`` (422); the message names neither the age nor a date.
    """
    age = age_at_study(instance)
    if age is not None and age < ADULT_AGE_YEARS:
        raise _paediatric_study()


MAX_ALTERNATIVES: Final = 3
"""At most this many other frontal views of a study are analysed when the model cannot assess the one
chosen (each costs one more inference; a study rarely holds more than two frontal views)."""


async def _assessable_alternative(
    ctx: Context, study: Study, served: ServedModel, refused: Analysis, consent: Awaitable[object]
) -> tuple[Study, Analysis, int]:
    """When the model cannot assess the frontal view chosen, the study's next frontal views, best first.

    A lateral film tagged PA (View Position and orientation both say frontal, only the image does not)
    is chosen like any PA; the model refuses it as out of its distribution, and a real frontal view of
    the same study would go unanalysed. Returns the study with the first assessable view as its primary,
    that view's analysis and how many views were refused before it; or the study as it came, the first
    refusal and 0 when no other view is assessable (the result is then "not assessable", as before).
    An alternative that cannot be prepared (too small, unusable) is skipped: the study was accepted.
    """
    refused_views = 1
    for candidate in frontal_alternatives(study.instances, study.primary)[:MAX_ALTERNATIVES]:
        try:
            tried = await analyse(
                candidate, served=served, host=ctx.host, run=ctx.workers.run, store=True, cleared=consent
            )
        except (ImageTooSmall, ImageUnusable):
            continue
        if tried.ood.assessable:
            return replace(study, primary=candidate), tried, refused_views
        refused_views += 1
    return study, refused, 0


def instance_in(instance: Instance) -> InstanceIn:
    """A decoded instance as the record files it (every intake: upload, STOW-RS, DIMSE)."""
    return InstanceIn(
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        series_instance_uid=instance.series_instance_uid,
        modality=instance.modality,
        view_position=instance.view_position,
        pixel_digest=instance.pixel_digest or None,
    )


async def join_analysed(
    ctx: Context,
    actor: Actor,
    *,
    study_instance_uid: str,
    instances: tuple[InstanceIn, ...],
    frontal: str | None,
    patient: tuple[str, str | None],
) -> AnalysedStudy | None:
    """The study's standing result, when instances of a study analysed before (sent after it, by a PACS:
    over DIMSE or STOW-RS) leave it as it is; they then joined the study in the record. None: analyse them.

    They are judged as if they had come with the study: its result stands when they hold no frontal view
    (``frontal`` None) or only one ranked below the view the result scored (an AP after a PA,
    :func:`inference.dicom.frontal_rank`); a frontal of the same or a higher rank is analysed, and its
    result supersedes the earlier one. A result the model could not assess (its film refused by the
    guard, e.g. a lateral tagged PA) outranks no frontal view: any is analysed. Instances filed under
    another study or with other pixels, or naming another patient than the study's, are analysed as a
    study (their filing is refused as a conflict).
    The read and the instances filed are one transaction, audited ``studies:submit`` for ``actor``
    (:meth:`inference.record.Results.join_analysed`).

    Args:
        frontal: View Position of the frontal view judged (empty when not given); None: none among them,
            or none the model could assess.
        patient: The Patient ID and Issuer of Patient ID (None: not given) they name.

    Raises:
        RecordError: The record could not be read or written.
    """

    def stands(analysed: AnalysedStudy) -> bool:
        if frontal is None:
            return True
        return analysed.assessable and frontal_rank(frontal) > frontal_rank(analysed.view_position)

    found = await asyncio.to_thread(
        ctx.record.results.join_analysed,
        study_instance_uid=study_instance_uid,
        instances=instances,
        patient=PatientIn(identifier=patient[0], issuer=patient[1]),
        stands=stands,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action="studies:submit"),
    )
    analysed = found.value if found is not None and found.served else None
    return analysed if analysed is not None and analysed.stands else None


def model_ref(served: ServedModel) -> ModelRef:
    """The served model version as the record files it with a result."""
    return ModelRef(
        name=served.name,
        version=served.version,
        sha256=served.sha256,
        provider=served.provider,
        synthetic=served.synthetic,
        training=_warnings.training(served),
        training_data=served.training_data,
    )


class _Resent(InferenceError):
    """The study is a resend (:meth:`inference.record.Results.intake`): answered from the record, never
    scored (raised through the model's gate, so the prepared input never reaches the model)."""


async def _cleared(
    ctx: Context, actor: Actor, *, study: Study, served: ServedModel, patient: PatientIn
) -> None:
    """The gate before the model: one read of the record (:meth:`inference.record.Results.intake`, the
    patient's consent and birth date on file and whether the study is a resend, while the image is
    prepared), then a patient who objected is refused (audited, :class:`ConsentObjection`), a patient the
    birth date on file makes a child at the study is refused (audited, ``paediatric_study``) and a resend
    is answered from the record (:class:`_Resent`). Looked up once the pixels are decoded (their digests
    are the instances'): a resend costs its decoding and two round trips, not an analysis whose every
    product the record would throw away.

    The digests of large uncompressed films may still be under way when the study comes (``read_study``
    with ``digest_later``): they are awaited here, beside the image's preparation, not in the decode."""
    for instance in study.instances:
        await instance.digested()
    intake = await db(
        ctx.record.results.intake,
        study_instance_uid=study.study_instance_uid,
        patient=patient,
        instances=tuple(instance_in(i) for i in study.instances),
        model=model_ref(served),
    )
    found = intake.consent
    await refuse_objection(ctx, actor, found=found, action="studies:submit")
    # The header said no age under 18 (refuse_paediatric); the record's birth date may (a header without
    # one, or with another): either makes the patient a child at the study, and a resend is not served.
    on = date.fromisoformat(study.primary.study_date) if study.primary.study_date else None
    if found is not None and under_age_on_file(intake.birth_date, on):
        refused = _paediatric_study()
        await audit_paediatric(
            ctx, actor, patient_id=found.patient_id, action="studies:submit", code=refused.code
        )
        raise refused
    if intake.resend:
        raise _Resent


async def _answer_resend(
    ctx: Context, actor: Actor, *, study: Study, served: ServedModel, patient: PatientIn
) -> StoredResult | None:
    """The result already filed that ``study`` is a resend of, served as a resend filed after its analysis
    is: audited ``duplicate`` in the transaction that reads it back, nothing owed again to the PACS (the
    first filing owns its outputs); None when it is not a resend any more (analyse it)."""
    start = time.perf_counter()
    stored = await db(
        ctx.record.results.answer_resend,
        study_instance_uid=study.study_instance_uid,
        patient=patient,
        instances=tuple(instance_in(i) for i in study.instances),
        model=model_ref(served),
        audit=audit_entry(actor, action="studies:submit"),
    )
    observe_stage(
        "record_commit", model=served.name, version=served.version, seconds=time.perf_counter() - start
    )
    return stored


def _study_warnings(
    study: Study, served: ServedModel, analysis: Analysis, *, set_aside: int = 0
) -> list[str]:
    warnings = []
    if not analysis.ood.assessable:  # first: it changes how every other line of the result is read
        model = analysis.model
        warnings.append(
            _warnings.not_assessable(analysis.ood.score, analysis.ood.threshold, model.name, model.version)
        )
    warnings.append(_warnings.training(served))
    laterals = sum(1 for instance in study.instances if is_lateral(instance))
    if laterals:
        warnings.append(_warnings.lateral_set_aside(laterals))
    if set_aside:
        warnings.append(_warnings.not_frontal_set_aside(set_aside))
    others = len(study.instances) - laterals - 1 - set_aside
    if others > 0:
        warnings.append(_warnings.other_frontals(others))
    if study.primary.reduction > 1:
        warnings.append(_warnings.reduced_resolution(study.primary.reduction))
    return warnings


async def analyse_study(
    *,
    ctx: Context,
    actor: Actor,
    blobs: Sequence[bytes],
    source: str,
    accept_language: str | None,
) -> Outcome:
    """Analyse the DICOM files of one study and file the result before returning it.

    Decoding runs on the worker pool at a resolution just sufficient for the served model's input.
    Sending the same instances again returns the result already filed (``created`` False); so does
    sending instances that are all filed in the study already with the same pixels (the whole study again,
    once late instances joined it with no result of their own): the study's newest result.

    Args:
        ctx: The process's engines.
        actor: Who sends the study (its facility becomes the patient's facility when new).
        blobs: DICOM Part-10 files, all of one study.
        source: The channel: ``upload``, ``stow`` or ``dimse``.
        accept_language: The caller's Accept-Language header (for the rationale).

    Raises:
        DicomRejected: A file or the study is refused (mixed studies, CT, lateral only, a patient under
            18, an image smaller than the model's input, ...).
        ConsentObjection: The patient objected to AI processing (nothing is analysed).
        ModelUnavailable: No imaging model is loaded.
    """
    served = ctx.host.imaging
    start = time.perf_counter()
    # The pixels' digests (a resend's, a conflict's evidence) are finished on their own threads while the
    # image is prepared: only the record's reads and writes need them.
    study = await ctx.workers.run(
        read_study, blobs, limits=ctx.limits, target_size=served.imaging_meta.input_size, digest_later=True
    )
    observe_stage("decode", model=served.name, version=served.version, seconds=time.perf_counter() - start)
    try:
        return await analyse_decoded(
            ctx=ctx, actor=actor, study=study, source=source, accept_language=accept_language, served=served
        )
    except BaseException:
        for instance in study.instances:  # refused, or gone: a digest still under way is read by nobody
            instance.abandon_digest()
        raise


async def analyse_decoded(
    *,
    ctx: Context,
    actor: Actor,
    study: Study,
    source: str,
    accept_language: str | None,
    served: ServedModel | None = None,
    scored: Callable[[Instance, bool], Awaitable[None]] | None = None,
) -> Outcome:
    """Analyse a study already decoded by :mod:`inference.dicom` (the STOW-RS and DIMSE paths).

    Args:
        scored: Called with the view the analysis scored (the chosen one, or the next frontal view when
            the model could not assess it) and whether the model could assess it, before anything is
            filed; what it raises is raised, and nothing is filed (late instances: a view ranked below
            the study's standing result's, or one the model refused, leaves that result standing).
    """
    served = served if served is not None else ctx.host.imaging
    primary = study.primary
    refuse_paediatric(primary)  # from the header alone: nothing is filed, no pixel is scored
    patient = primary.patient
    patient_in = identify(
        ctx,
        actor,
        PatientIn(
            identifier=patient.patient_id,
            issuer=patient.issuer,
            name=patient.name,
            birth_date=patient.birth_date,
            sex=patient.sex,
        ),
    )
    # Before any pixel reaches the model: a patient who objected is not analysed at all. The consent is
    # read from the record while the image is prepared (windowing and resizing are not the analysis);
    # its refusal is raised whatever became of the preparation, and nothing is scored or kept.
    consent: asyncio.Future[None] = asyncio.ensure_future(
        _cleared(ctx, actor, study=study, served=served, patient=patient_in)
    )
    try:
        try:
            analysis = await analyse(
                primary, served=served, host=ctx.host, run=ctx.workers.run, store=True, cleared=consent
            )
        except _Resent:
            resent = await _answer_resend(ctx, actor, study=study, served=served, patient=patient_in)
            if resent is not None:
                return _resent_outcome(
                    resent, served, instances=len(study.instances), language=accept_language
                )
            # Not a resend any more (the record changed in between): analysed as any study, its consent
            # cleared by the same read.
            consent = asyncio.get_running_loop().create_future()
            consent.set_result(None)
            analysis = await analyse(
                primary, served=served, host=ctx.host, run=ctx.workers.run, store=True, cleared=consent
            )
        if not analysis.ood.assessable:
            study, analysis, set_aside = await _assessable_alternative(ctx, study, served, analysis, consent)
            primary = study.primary
        else:
            set_aside = 0
    except ImageTooSmall as e:  # valid, but not what the model can answer about: 422, like the header's
        raise DicomUnsupportedContent("image_too_small", str(e)) from e
    except ImageUnusable as e:  # a decoded image preprocessing cannot use is still the sender's bad input
        raise DicomRejected("decode_failed", str(e)) from e
    finally:
        if not consent.done():  # the request went away while the consent was read
            consent.cancel()
    if scored is not None:
        await scored(primary, analysis.ood.assessable)
    findings = analysis.scores  # no finding is positive on an image the model refused
    assessable = analysis.ood.assessable
    # The maps (and the display rendering, unless it was encoded while the model ran) and the kept model
    # input are encoded side by side (each on a worker thread).
    stored_rendering, kept = await asyncio.gather(
        ctx.workers.run(analysis.rendering.to_stored),
        training_input(ctx, served=served, analysis=analysis, instance=primary),
    )

    # The record keeps the higher of this and the study's current priority (keep_study_priority): a new
    # analysis never lowers the urgency a study already has on the worklist.
    priority = ctx.policy.imaging_priority(findings, assessable=assessable)

    synthetic = served.synthetic
    data = ImagingResultIn(
        patient=patient_in,
        study_instance_uid=study.study_instance_uid,
        accession_number=primary.accession_number,
        study_date=primary.study_date,
        instances=tuple(instance_in(i) for i in study.instances),
        primary_sop_instance_uid=primary.sop_instance_uid,
        model=model_ref(served),
        findings=tuple(
            FindingIn(
                code=f.code,
                display=finding_display(f.code, "en"),
                probability=f.probability,
                positive=f.positive,
                threshold=f.threshold,
                box=f.box,
                heatmap=f.code in analysis.cams,
            )
            for f in analysis.findings
        ),
        priority=priority,
        keep_study_priority=True,
        warnings=tuple(_study_warnings(study, served, analysis, set_aside=set_aside)),
        rationale={
            lang: imaging_rationale(findings, lang, synthetic=synthetic, assessable=assessable)
            for lang in LANGUAGES
        },
        source=source,
        assessable=assessable,
        ood_score=analysis.ood.score,
        ood_threshold=analysis.ood.threshold,
        rendering=RenderingData(
            display=stored_rendering.display, cams=stored_rendering.cams, geometry=stored_rendering.geometry
        ),
    )
    outputs = await prepare_outputs(ctx, study=study)
    data = replace(data, outputs=outputs, training_input=kept)
    spool = outputs.spool if outputs is not None else None
    start = time.perf_counter()
    try:
        stored = await file_result(ctx, actor, data=data, action="studies:submit")
    except BaseException:
        await discard_spool(ctx, spool)
        raise
    # The outbox worker builds the outputs of a new result filed with a pending build; otherwise (a resend,
    # whose first filing owns them, or nothing owed: no destination, or the patient objected to sharing)
    # no build row refers to the spooled header.
    owed = stored.created and isinstance(stored.result, ImagingResult) and stored.result.build is not None
    if not owed:
        await discard_spool(ctx, spool)
    observe_stage(
        "record_commit", model=served.name, version=served.version, seconds=time.perf_counter() - start
    )
    if stored.created:  # a re-sent study is not a new observation of the input distribution
        observe_drift(ctx, served, analysis)
    logger.info(
        "imaging result filed",
        extra={
            "event": "imaging_result",
            "result_id": stored.result_id,
            "model": served.name,
            "model_version": served.version,
            "instances": len(study.instances),
            "priority": stored.result.priority if stored.result is not None else priority,
            "assessable": assessable,
            "outcome": "created" if stored.created else "duplicate",
        },
    )
    if stored.result is None:  # the record reads every filed result back in its transaction
        raise RuntimeError("The result just filed could not be read back.")
    if owed:
        outputs_owed(ctx)  # the outbox worker builds the SR and captures, off the request path
    if stored.created:  # the challenger sees the input after the champion's answer is filed
        offer_study(ctx, result_id=stored.result_id, champion=served, analysis=analysis, instance=primary)
    return Outcome(
        result=with_build_warning(stored.result),
        created=stored.created,
        language=choose_language(accept_language),
    )


def _resent_outcome(
    stored: StoredResult, served: ServedModel, *, instances: int, language: str | None
) -> Outcome:
    """The answer to a resend served before any analysis: what the filing of a resend answers."""
    if stored.result is None:  # the record reads the result back in its transaction
        raise RuntimeError("The result already filed could not be read back.")
    logger.info(
        "imaging result filed",
        extra={
            "event": "imaging_result",
            "result_id": stored.result_id,
            "model": served.name,
            "model_version": served.version,
            "instances": instances,
            "priority": stored.result.priority,
            "assessable": getattr(stored.result, "assessable", True),
            "outcome": "duplicate",
        },
    )
    return Outcome(
        result=with_build_warning(stored.result), created=False, language=choose_language(language)
    )
