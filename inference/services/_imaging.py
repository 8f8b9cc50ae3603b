"""Chest radiograph analysis: decode → preprocess → score → explain → prioritise → file → public result."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.dicom import DicomRejected, Instance, Study, is_lateral, read_study
from inference.explain import LANGUAGES, choose_language, finding_display, imaging_rationale
from inference.policy import max_priority
from inference.record import FindingIn, ImagingResultIn, InstanceIn, ModelRef, PatientIn
from inference.services import _warnings
from inference.services._access import audit, localise
from inference.services._consent import check_ai_consent
from inference.services._context import Actor, Context, db
from inference.services._deliveries import queue_outputs, with_deliveries

if TYPE_CHECKING:
    from inference.preprocess import Geometry
    from inference.runtime import ServedModel

logger = logging.getLogger(__name__)


HEATMAP_SIDE = 1024
"""Longest side of the heatmap overlays served by the API; heat and box are computed at that size."""


@dataclass(frozen=True)
class Outcome:
    """A result as the API returns it, and what became of it.

    Attributes:
        result: The public result (with its ``deliveries``).
        created: Whether this request filed it (False: it was already filed).
        queued: False when its outputs could not be queued for the destinations (logged; sending the
            study again queues them, since queueing is idempotent).
    """

    result: dict[str, Any]
    created: bool
    queued: bool = True


@dataclass(frozen=True)
class _Rendered:
    box: tuple[int, int, int, int] | None
    png: bytes


def _display_pixels(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Stored values resampled to the overlay's ``(rows, columns)``: area average down, bilinear up.

    Done before the display window so windowing, colouring and encoding run on the overlay's pixels,
    not on the radiograph's (a 2048² image has four times as many as a 1024² overlay). An integer part
    of the reduction is done by summing strided views (a few milliseconds for 2048² → 1024²); the
    remainder, if any, by Pillow on the already reduced image.
    """
    from PIL import Image

    if pixels.shape == shape:
        return pixels
    factor = min(pixels.shape[0] // shape[0], pixels.shape[1] // shape[1])
    image = pixels
    if factor >= 2:
        # Up to factor - 1 edge rows or columns are left out: under one overlay pixel.
        rows, columns = (pixels.shape[0] // factor) * factor, (pixels.shape[1] // factor) * factor
        total = np.zeros((rows // factor, columns // factor), dtype=np.float32)
        for dy in range(factor):
            for dx in range(factor):
                total += pixels[dy:rows:factor, dx:columns:factor]
        image = total * np.float32(1.0 / (factor * factor))
        if image.shape == shape:
            return image
    shrinking = shape[0] <= image.shape[0] and shape[1] <= image.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (shape[1], shape[0]), method
    )
    return np.asarray(resized)


def _render(
    instance: Instance, geometry: Geometry, cams: dict[str, np.ndarray], params: Any
) -> dict[str, _Rendered]:
    """Heatmap overlay and hottest-region box per finding (CPU-bound: runs on the worker pool).

    Heat, box and overlay are computed at the overlay's size (longest side :data:`HEATMAP_SIDE`); the box
    is then scaled back to original pixels, enclosing every original pixel its region covers.
    """
    from inference.explain import cam_to_heatmap, hottest_box, overlay_png
    from inference.preprocess import to_unit

    original = geometry.original_shape
    scale = min(1.0, HEATMAP_SIDE / max(original))
    shape = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
    base = to_unit(
        _display_pixels(instance.pixels, shape),
        photometric=instance.photometric,
        rescale_slope=instance.rescale_slope,
        rescale_intercept=instance.rescale_intercept,
        window_centers=instance.window_centers,
        window_widths=instance.window_widths,
        voi_lut_function=instance.voi_lut_function,
        voi_lut=instance.voi_lut,
        window_percentiles=params.window_percentiles,
    )
    rendered: dict[str, _Rendered] = {}
    for code, cam in cams.items():
        heat = cam_to_heatmap(cam, geometry, shape=shape)
        box = hottest_box(heat)
        png = overlay_png(base, heat, box=box, max_side=HEATMAP_SIDE)
        full = None if box is None else box.rescaled(shape, original)
        rendered[code] = _Rendered(
            box=None if full is None else (full.x0, full.y0, full.x1, full.y1), png=png
        )
    return rendered


def _study_warnings(study: Study, synthetic: bool) -> list[str]:
    warnings = [_warnings.SYNTHETIC] if synthetic else []
    laterals = sum(1 for instance in study.instances if is_lateral(instance))
    if laterals:
        warnings.append(_warnings.lateral_set_aside(laterals))
    others = len(study.instances) - laterals - 1
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
    Sending the same instances again returns the result already filed (``created`` False).

    Args:
        ctx: The process's engines.
        actor: Who sends the study (its facility becomes the patient's facility when new).
        blobs: DICOM Part-10 files, all of one study.
        source: The channel: ``upload``, ``stow`` or ``dimse``.
        accept_language: The caller's Accept-Language header (for the rationale).

    Raises:
        DicomRejected: A file or the study is refused (mixed studies, CT, lateral only, ...).
        ConsentObjection: The patient objected to AI processing (nothing is analysed).
        ModelUnavailable: No imaging model is loaded.
    """
    served = ctx.host.imaging
    study = await ctx.workers.run(
        read_study, blobs, limits=ctx.limits, target_size=served.imaging_meta.input_size
    )
    return await analyse_decoded(
        ctx=ctx, actor=actor, study=study, source=source, accept_language=accept_language, served=served
    )


async def analyse_decoded(
    *,
    ctx: Context,
    actor: Actor,
    study: Study,
    source: str,
    accept_language: str | None,
    served: ServedModel | None = None,
) -> Outcome:
    """Analyse a study already decoded by :mod:`inference.dicom` (the STOW-RS and DIMSE paths)."""
    from inference.preprocess import prepare

    served = served if served is not None else ctx.host.imaging
    meta = served.imaging_meta
    params = served.imaging_meta.preprocess
    primary = study.primary
    patient = primary.patient
    patient_in = PatientIn(
        identifier=patient.patient_id,
        issuer=patient.issuer,
        name=patient.name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        facility=actor.principal.facility,
    )
    # Before any pixel reaches the model: a patient who objected is not analysed at all.
    await check_ai_consent(ctx, actor, patient=patient_in, action="studies:submit")
    try:
        prepared = await ctx.workers.run(prepare, primary, params)
    except ValueError as e:  # a decoded image preprocessing cannot use is still the sender's bad input
        raise DicomRejected(
            "decode_failed", "The decoded image could not be prepared for the model; send a valid radiograph."
        ) from e
    [scores] = await ctx.host.score_images([prepared.tensor], model=served)
    findings = scores.findings
    cams = {code: scores.cam[i] for i, (code, _p, positive) in enumerate(findings) if positive}
    rendered = await ctx.workers.run(_render, primary, prepared.geometry, cams, params) if cams else {}

    new_priority = ctx.policy.imaging_priority(findings)
    existing = await db(ctx.record.study_priority, study_instance_uid=study.study_instance_uid)
    # A new analysis never lowers the urgency a study already has on the worklist.
    priority = max_priority(new_priority, existing)

    synthetic = served.synthetic
    data = ImagingResultIn(
        patient=patient_in,
        study_instance_uid=study.study_instance_uid,
        accession_number=primary.accession_number,
        study_date=primary.study_date,
        instances=tuple(
            InstanceIn(
                sop_instance_uid=i.sop_instance_uid,
                sop_class_uid=i.sop_class_uid,
                series_instance_uid=i.series_instance_uid,
                modality=i.modality,
                view_position=i.view_position,
            )
            for i in study.instances
        ),
        primary_sop_instance_uid=primary.sop_instance_uid,
        model=ModelRef(
            name=served.name, version=served.version, sha256=served.sha256, provider=served.provider
        ),
        findings=tuple(
            FindingIn(
                code=code,
                display=finding_display(code, "en"),
                probability=probability,
                positive=positive,
                threshold=float(meta.thresholds[code]),
                box=rendered[code].box if code in rendered else None,
                heatmap_png=rendered[code].png if code in rendered else None,
            )
            for code, probability, positive in findings
        ),
        priority=priority,
        warnings=tuple(_study_warnings(study, synthetic)),
        rationale={lang: imaging_rationale(findings, lang, synthetic=synthetic) for lang in LANGUAGES},
        source=source,
    )
    stored = await db(ctx.record.save_imaging_result, data=data)
    await audit(
        ctx,
        actor,
        action="studies:submit",
        outcome="success" if stored.created else "duplicate",
        resource_type="ImagingResult",
        resource_id=stored.result_id,
        patient_id=stored.patient_id,
    )
    logger.info(
        "imaging result filed",
        extra={
            "event": "imaging_result",
            "result_id": stored.result_id,
            "model": served.name,
            "model_version": served.version,
            "instances": len(study.instances),
            "priority": priority,
            "outcome": "created" if stored.created else "duplicate",
        },
    )
    result = await db(ctx.record.get_result, result_id=stored.result_id)
    if result is None:  # committed a moment ago: only a concurrent manual delete could get here
        raise RuntimeError("The result just filed could not be read back.")
    queued = await queue_outputs(
        ctx, study=study, served=served, result=result, cams=cams, geometry=prepared.geometry
    )
    result = await with_deliveries(ctx, result)
    return Outcome(
        result=localise(result, choose_language(accept_language)), created=stored.created, queued=queued
    )
