"""Shadow scoring of a challenger on live traffic, and the comparison it feeds (CLI, ``/metrics``, gate).

After the champion's result is filed (and while the route returns it), :func:`offer_study` /
:func:`offer_vitals` hand the same input to the host's :class:`~inference.runtime.ShadowQueue`. The job
scores it with the ``challenger`` on the shadow thread and files the output with
:class:`~inference.record.ShadowResults`: never a result, never on the worklist, never in FHIR, never sent
to a PACS. A full queue drops the job (counted), so the champion's answers are never held back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Gauge

from inference.record import ShadowResults, TrainingInputIn, encode_input
from inference.services._comparison import Comparison, compare_pairs
from inference.services._context import Context, db

if TYPE_CHECKING:
    from inference.analysis import Analysis
    from inference.dicom import Instance
    from inference.record import Record
    from inference.runtime import ServedModel

logger = logging.getLogger(__name__)

SHADOW_PAIRS = Gauge(
    "dxassist_shadow_pairs",
    "Inputs answered by the champion and shadow-scored by the challenger.",
    ["model", "champion", "challenger"],
    multiprocess_mode="livemostrecent",
)
SHADOW_VERDICTS = Gauge(
    "dxassist_shadow_reader_verdicts",
    "Readers' verdicts on shadow-scored inputs.",
    ["model", "champion", "challenger"],
    multiprocess_mode="livemostrecent",
)
SHADOW_STAT = Gauge(
    "dxassist_shadow_comparison",
    "Champion vs challenger on shadow-scored inputs, per finding: positive_agreement, negative_agreement, "
    "kappa, mean_abs_difference, psi, and against readers champion_/challenger_sensitivity/specificity.",
    ["model", "champion", "challenger", "finding", "statistic"],
    multiprocess_mode="livemostrecent",
)
SHADOW_OOD_PASS = Gauge(
    "dxassist_shadow_ood_pass_rate",
    "Share of shadow-scored inputs each version's OOD guard accepted.",
    ["model", "champion", "challenger", "side"],
    multiprocess_mode="livemostrecent",
)

_last_update: dict[tuple[str, str, str], float] = {}


def shadow_store(record: Record) -> ShadowResults:
    """The shadow outputs of ``record``."""
    return ShadowResults(record.sessions)


def _same_preprocessing(a: ServedModel, b: ServedModel) -> bool:
    return a.imaging_meta.preprocess == b.imaging_meta.preprocess


def _score_study(challenger: ServedModel, tensor: np.ndarray | None, instance: Instance | None) -> Any:
    """The challenger's output for a study (on the shadow thread).

    Raises:
        ShadowRefused: The image is smaller than the challenger's input (``image_too_small``), which
            would have to score an enlargement it never saw (the champion's answer stands).
    """
    from inference.analysis import ImageTooSmall, prepare_input
    from inference.runtime import ShadowRefused, score_batch

    if tensor is None:
        assert instance is not None
        try:
            tensor = prepare_input(instance, challenger).tensor
        except ImageTooSmall as e:
            raise ShadowRefused(
                f"Challenger {challenger.name} version {challenger.version} analyses radiographs with at "
                f"least {challenger.imaging_meta.input_size} pixels on their longer side; a smaller image "
                "answered by the champion is not compared.",
                reason="image_too_small",
                version=challenger.version,
            ) from e
    [output] = score_batch(challenger, tensor[None])
    return output


def offer_study(
    ctx: Context, *, result_id: str, champion: ServedModel, analysis: Analysis, instance: Instance
) -> bool:
    """Queue the challenger's scoring of a filed imaging result's input; False when none ran or it dropped."""
    challenger = ctx.host.challenger("imaging")
    if challenger is None or challenger.version == champion.version:
        return False
    tensor = analysis.model_input if _same_preprocessing(champion, challenger) else None
    # Only what the job needs is kept while it waits: the tensor (a few tens of KB), or the decoded
    # instance when the challenger prepares its input differently.
    kept_instance = instance if tensor is None else None

    async def job() -> None:
        loop = asyncio.get_running_loop()
        output = await loop.run_in_executor(
            ctx.host.shadow.executor, _score_study, challenger, tensor, kept_instance
        )
        meta = challenger.imaging_meta
        await _file(
            ctx,
            challenger,
            result_id=result_id,
            probabilities={c: float(p) for c, p in zip(meta.labels, output.probabilities, strict=True)},
            positive={c: bool(p) for c, p in zip(meta.labels, output.positive, strict=True)},
            thresholds={c: float(meta.thresholds[c]) for c in meta.labels},
            assessable=bool(output.assessable),
            extra={"ood": {"score": _finite(output.ood_score), "threshold": float(output.ood_threshold)}},
            champion=champion.version,
        )

    return ctx.host.shadow.offer(challenger.name, job)


def offer_vitals(
    ctx: Context, *, result_id: str, champion: ServedModel, values: np.ndarray, present: np.ndarray
) -> bool:
    """Queue the challenger's scoring of a filed triage result's vital signs."""
    from inference.record import TRIAGE_FEEDBACK_CODE
    from inference.runtime import score_triage

    challenger = ctx.host.challenger("triage")
    if challenger is None or challenger.version == champion.version:
        return False
    values, present = np.array(values, dtype=np.float32), np.array(present, dtype=np.float32)

    async def job() -> None:
        loop = asyncio.get_running_loop()
        output = await loop.run_in_executor(
            ctx.host.shadow.executor, score_triage, challenger, values, present
        )
        code = TRIAGE_FEEDBACK_CODE
        await _file(
            ctx,
            challenger,
            result_id=result_id,
            probabilities={code: float(output.probability)},
            positive={code: bool(output.positive)},
            thresholds={code: float(challenger.triage_meta.threshold)},
            assessable=True,
            extra={"logit": float(output.logit)},
            champion=champion.version,
        )

    return ctx.host.shadow.offer(challenger.name, job)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


async def _file(ctx: Context, challenger: ServedModel, *, champion: str, **fields: Any) -> None:
    from inference.runtime._shadow import SHADOW_DONE

    store = shadow_store(ctx.record)
    filed = await db(
        store.save, model_name=challenger.name, version=challenger.version, sha256=challenger.sha256, **fields
    )
    if not filed:
        return
    SHADOW_DONE.labels(challenger.name, challenger.version).inc()
    key = (challenger.name, champion, challenger.version)
    now = time.monotonic()
    interval = float(ctx.settings.runtime.shadow_metrics_seconds)
    if now - _last_update.get(key, -math.inf) >= interval:
        _last_update[key] = now
        comparison = await db(
            compare_versions,
            ctx.record,
            model=challenger.name,
            champion=champion,
            challenger=challenger.version,
        )
        publish(comparison)


def compare_versions(record: Record, *, model: str, champion: str, challenger: str) -> Comparison:
    """The comparison of two versions of ``model`` on the inputs both answered (the record's shadow pairs)."""
    pairs = shadow_store(record).pairs(
        model_name=model, champion_version=champion, challenger_version=challenger
    )
    return compare_pairs(pairs, model=model, champion=champion, challenger=challenger)


def shadow_evidence(record: Record, *, model: str, champion: str | None, challenger: str) -> tuple[int, int]:
    """``(shadow-scored inputs, readers' verdicts on them)`` for a candidate against the champion.

    With no champion (a first promotion), every shadow output of ``challenger`` counts.
    """
    store = shadow_store(record)
    if champion is None:
        total = verdicts = 0
        for versions in store.versions(model_name=model):
            if versions.challenger_version == challenger:
                c = compare_versions(
                    record, model=model, champion=versions.champion_version, challenger=challenger
                )
                total, verdicts = total + c.pairs, verdicts + c.reader_verdicts
        return total, verdicts
    c = compare_versions(record, model=model, champion=champion, challenger=challenger)
    return c.pairs, c.reader_verdicts


def _gauge_value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def publish(comparison: Comparison) -> None:
    """Put a comparison on ``/metrics``."""
    labels = (comparison.model, comparison.champion, comparison.challenger)
    SHADOW_PAIRS.labels(*labels).set(comparison.pairs)
    SHADOW_VERDICTS.labels(*labels).set(comparison.reader_verdicts)
    SHADOW_OOD_PASS.labels(*labels, "champion").set(_gauge_value(comparison.champion_ood_pass.value))
    SHADOW_OOD_PASS.labels(*labels, "challenger").set(_gauge_value(comparison.challenger_ood_pass.value))
    for f in comparison.findings:
        for name, value in (
            ("positive_agreement", f.positive_agreement),
            ("negative_agreement", f.negative_agreement),
            ("kappa", f.kappa),
            ("mean_abs_difference", f.mean_abs_difference),
            ("psi", f.psi),
        ):
            SHADOW_STAT.labels(*labels, f.code, name).set(_gauge_value(value))
    for r in comparison.readers:
        for name, proportion in (
            ("champion_sensitivity", r.champion_sensitivity),
            ("champion_specificity", r.champion_specificity),
            ("challenger_sensitivity", r.challenger_sensitivity),
            ("challenger_specificity", r.challenger_specificity),
        ):
            SHADOW_STAT.labels(*labels, r.code, name).set(_gauge_value(proportion.value))


def _burned_in(instance: Instance) -> bool:
    return str(instance.header.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"


async def training_input(
    ctx: Context, *, served: ServedModel, analysis: Analysis, instance: Instance
) -> TrainingInputIn | None:
    """The de-identified model input to keep with a new result for retraining, or None.

    It is filed with the result, in its transaction, where the patient's consent is checked. Nothing is
    kept when the setting is off, the header declares burned-in annotation (text in the pixels could name
    the patient) or the image was not assessable (outside what the model knows).
    """
    if not ctx.settings.record.keep_training_inputs or analysis.model_input is None:
        return None
    if _burned_in(instance) or not analysis.ood.assessable:
        return None
    params = served.imaging_meta.preprocess
    pixels = await ctx.workers.run(
        encode_input,
        analysis.model_input,
        mean=params.mean,
        std=params.std,
        window_percentiles=(float(params.window_percentiles[0]), float(params.window_percentiles[1])),
    )
    return TrainingInputIn(
        model_name=served.name, model_version=served.version, input_size=params.input_size, pixels=pixels
    )
