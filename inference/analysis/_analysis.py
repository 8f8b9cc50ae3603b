"""Decoded radiograph + served model -> :class:`Analysis`: the one imaging path every caller uses.

Preprocess (``inference.preprocess``, the code training uses) -> ONNX Runtime (``inference.runtime``)
-> class activation maps, hottest-region boxes and the display rendering. The API, the DICOM listener,
the delivery worker (through the stored :class:`~inference.analysis.Rendering`), the benchmarks and
tests call this instead of chaining the steps themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from inference.analysis._display import (
    block_mean,
    display_shape,
    render_display,
    shared_reduction,
    to_display,
)
from inference.analysis._errors import ImageTooSmall, ImageUnusable
from inference.analysis._metrics import observe_stage
from inference.analysis._rendering import Rendering, encode_display

if TYPE_CHECKING:
    from inference.dicom import Instance
    from inference.preprocess import Geometry, Prepared
    from inference.runtime import ImagingOutput, ModelHost, ServedModel

P = ParamSpec("P")
T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]
"""Runs a blocking function off the event loop: ``await run(fn, *args)`` (e.g. ``Workers.run``)."""


@dataclass(frozen=True)
class FindingAnalysis:
    """One finding of an analysed image.

    Attributes:
        code: Finding code of the model (``nodule``, ...).
        probability: Calibrated probability in [0, 1].
        positive: Whether it reached the operating threshold.
        threshold: The operating threshold of the served model version.
        box: ``(x0, y0, x1, y1)`` around the hottest region of its class activation map, in original
            pixels, half-open; ``None`` for a negative finding or a map without positive evidence.
    """

    code: str
    probability: float
    positive: bool
    threshold: float
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class OodAnalysis:
    """The model's out-of-distribution verdict on the image (the graph's ``ood`` output).

    Attributes:
        score: The OOD score (higher: less like the training images; may be non-finite).
        threshold: The model version's threshold (``dxassist.ood``).
        assessable: ``score`` is finite and at most ``threshold``. When False no finding is positive,
            no CAM is kept and no box is drawn: the model does not answer on this image.
    """

    score: float
    threshold: float
    assessable: bool


@dataclass(frozen=True)
class ModelInfo:
    """The served model version that made an analysis."""

    name: str
    version: str
    sha256: str
    provider: str
    synthetic: bool


@dataclass(frozen=True, eq=False)
class Analysis:
    """What the model says about one radiograph, and what is needed to show it.

    Attributes:
        model: The model version that ran.
        findings: One entry per model output, in the model's label order.
        rendering: Display rendering, CAMs of the positive findings at model resolution, letterbox
            geometry; overlays are drawn from it on demand.
        ood: The out-of-distribution score, its threshold, and whether the image is assessable.
        seconds: Wall time per stage (``preprocess``, ``inference``, ``explain``).
        model_input: The float32 ``[1, S, S]`` tensor the model scored (kept for retraining and for
            scoring a challenger with the same preprocessing); None when not kept.
    """

    model: ModelInfo
    findings: tuple[FindingAnalysis, ...]
    rendering: Rendering
    ood: OodAnalysis
    seconds: Mapping[str, float] = field(default_factory=dict)
    model_input: np.ndarray | None = None

    @property
    def geometry(self) -> Geometry:
        """Letterbox geometry between the original image and the model input."""
        return self.rendering.geometry

    @property
    def cams(self) -> Mapping[str, np.ndarray]:
        """Class activation maps (float32 ``[h, w]``, model resolution) of the positive findings."""
        return self.rendering.cams

    @property
    def scores(self) -> list[tuple[str, float, bool]]:
        """``(code, probability, positive)`` per finding, as the policy and rationale take them."""
        return [(f.code, f.probability, f.positive) for f in self.findings]

    def finding(self, code: str) -> FindingAnalysis:
        """The finding with this code (``KeyError`` when the model has none)."""
        for f in self.findings:
            if f.code == code:
                return f
        raise KeyError(f"The model has no finding {code!r}.")


@dataclass(frozen=True, eq=False)
class _Input:
    prepared: Prepared
    display: np.ndarray | None  # the display rendering, when the shared reduction produced it


def _prepare(instance: Instance, served: ServedModel) -> _Input:
    """The model input, and the display rendering when both come out of one reduced image.

    A radiograph with many more pixels than the model and the display need (an uncompressed 2048² film
    for a 160-px model) is first reduced by integer block means, as the JPEG 2000 path decodes at a
    reduced resolution level, and windowed once: the model input is letterboxed from it and, when the
    reduction lands on the display size, the display rendering is it. Windowing a quarter of the pixels
    once instead of all of them twice is what makes the server cheaper than decode + prepare on the
    full image; probabilities move by far less than the JPEG 2000 reduced decode's tolerance (0.02).
    Pixels that arrive at the display size (JPEG 2000 decoded at a reduced level) are windowed once for
    both without a reduction, which gives exactly what ``prepare`` and ``render_display`` give apart.
    """
    from inference.preprocess import prepare, prepare_unit, to_unit

    params = served.imaging_meta.preprocess
    original = (instance.rows, instance.columns)
    shape = display_shape(original)
    f = shared_reduction(instance.pixels.shape, shape, params.input_size)
    if f == 1 and instance.pixels.shape != shape:
        return _Input(prepared=prepare(instance, params), display=None)
    # Pixels already at the display size (a JPEG 2000 film decoded at a reduced level, a 1024² film) are
    # windowed once for both, as ``prepare`` and ``render_display`` would each do: the same values.
    unit = to_unit(
        block_mean(instance.pixels, f) if f > 1 else instance.pixels,
        photometric=instance.photometric,
        rescale_slope=instance.rescale_slope,
        rescale_intercept=instance.rescale_intercept,
        window_centers=instance.window_centers,
        window_widths=instance.window_widths,
        voi_lut_function=instance.voi_lut_function,
        voi_lut=instance.voi_lut,
        window_percentiles=params.window_percentiles,
    )
    prepared = prepare_unit(unit, original_shape=original, params=params)
    return _Input(prepared=prepared, display=to_display(unit) if unit.shape == shape else None)


def _check_size(instance: Instance, served: ServedModel) -> None:
    """Refuse an image whose long side is shorter than the model's input.

    Every image a model is trained on is larger than its input, so the letterbox always shrinks it. An
    image it would have to enlarge (a PACS thumbnail, a screenshot) is one the model never saw: with the
    quick-trained model most normal 64-80 px phantoms come back with a "nodule", while the OOD guard,
    which sees only the enlarged input, lets them pass.
    """
    size = served.imaging_meta.input_size
    if max(instance.rows, instance.columns) < size:
        raise ImageTooSmall(
            f"The image has {instance.rows} x {instance.columns} pixels; model {served.name} version "
            f"{served.version} analyses radiographs with at least {size} pixels on their longer side (it "
            "was never trained on enlarged images). Send the original radiograph, not a thumbnail."
        )


def _prepare_checked(instance: Instance, served: ServedModel) -> _Input:
    _check_size(instance, served)
    try:
        return _prepare(instance, served)
    except ValueError as e:
        raise ImageUnusable(
            "The decoded image could not be prepared for the model; send a valid radiograph."
        ) from e


def prepare_input(instance: Instance, served: ServedModel) -> Prepared:
    """The model input of a decoded radiograph, with the served model's preprocessing.

    Raises:
        ImageTooSmall: The image is smaller than the model's input.
        ImageUnusable: The decoded image cannot be prepared (empty, not 2-D, ...).
    """
    return _prepare_checked(instance, served).prepared


def explain(
    instance: Instance, prepared: Prepared, output: ImagingOutput, display: np.ndarray | None = None
) -> Analysis:
    """The analysis of scored image: display rendering, CAMs of the positive findings and their boxes.

    CAMs are kept at float16 precision (what the record stores), and the boxes are computed from those,
    so a box drawn later from the stored maps is the box the result reports.
    """
    start = time.perf_counter()
    served = output.model
    meta = served.imaging_meta
    if display is None:
        display = render_display(instance, meta.preprocess)
    cams = {
        code: np.asarray(output.cam[i], dtype=np.float16).astype(np.float32)
        for i, (code, _p, positive) in enumerate(output.findings)
        if positive
    }
    rendering = Rendering(display=display, cams=cams, geometry=prepared.geometry)
    findings = tuple(
        FindingAnalysis(
            code=code,
            probability=probability,
            positive=positive,
            threshold=float(meta.thresholds[code]),
            box=rendering.original_box(code) if positive else None,
        )
        for code, probability, positive in output.findings
    )
    return Analysis(
        model=ModelInfo(
            name=served.name,
            version=served.version,
            sha256=served.sha256,
            provider=served.provider,
            synthetic=served.synthetic,
        ),
        findings=findings,
        rendering=rendering,
        ood=OodAnalysis(score=output.ood_score, threshold=output.ood_threshold, assessable=output.assessable),
        seconds={"explain": time.perf_counter() - start},
    )


async def _direct(fn: Callable[..., T], /, *args: Any) -> T:
    return fn(*args)


async def analyse(
    instance: Instance,
    *,
    served: ServedModel,
    host: ModelHost,
    run: Runner | None = None,
    store: bool = False,
    cleared: Awaitable[object] | None = None,
) -> Analysis:
    """Analyse one decoded radiograph with a served model (the server's path: micro-batched scoring).

    Args:
        instance: The decoded radiograph (``inference.dicom``; pixels possibly at reduced resolution).
        served: The imaging model version to use (kept for the whole analysis across a hot swap).
        host: The model host whose micro-batcher scores the tensor.
        run: Runs the CPU-bound steps off the event loop (the process's worker pool); inline when None.
        store: Also encode the display rendering in the form the record keeps
            (:attr:`Rendering.encoded_display`), on another worker while the model runs, when the
            preprocessing made the rendering (otherwise :meth:`Rendering.to_stored` encodes it later).
        cleared: Awaited while the image is prepared and before it reaches the model (the patient's
            consent read from the record): what it raises is raised, whatever became of the
            preparation, and the image is never scored.

    Raises:
        ImageTooSmall: The image is smaller than the model's input.
        ImageUnusable: The decoded image cannot be prepared for the model.
        ModelUnavailable: The host is stopped or overloaded.
    """
    runner: Runner = run if run is not None else _direct
    labels = {"model": served.name, "version": served.version}
    start = time.perf_counter()
    # Announced while it is prepared: a batch already waiting to run waits for this image (the
    # announcement counts it as arrived once score_images submits it, or withdraws it on failure).
    with host.expecting_images():
        ready: _Input = await _prepared_once_cleared(runner(_prepare_checked, instance, served), cleared)
        scored = time.perf_counter()
        observe_stage("preprocess", seconds=scored - start, **labels)
        # The record's JPEG of the display rendering does not depend on the model's answer: it is encoded on
        # a second worker while the image is scored and explained, off the request's critical path.
        encoding = (
            asyncio.ensure_future(runner(encode_display, ready.display))
            if store and ready.display is not None
            else None
        )
        try:
            [output] = await host.score_images([ready.prepared.tensor], model=served)
            inferred = time.perf_counter()
            observe_stage("inference", seconds=inferred - scored, **labels)
            analysis: Analysis = await runner(explain, instance, ready.prepared, output, ready.display)
            observe_stage("explain", seconds=analysis.seconds["explain"], **labels)
            encoded: bytes | None = await encoding if encoding is not None else None
        except BaseException:
            if encoding is not None:
                encoding.cancel()
                with contextlib.suppress(BaseException):  # its outcome is moot: the analysis failed
                    await encoding
            raise
    rendering = analysis.rendering  # its display is ready.display, the array encoded
    if encoded is not None:
        rendering = replace(rendering, encoded_display=encoded)
    return Analysis(
        model=analysis.model,
        findings=analysis.findings,
        rendering=rendering,
        ood=analysis.ood,
        seconds={"preprocess": scored - start, "inference": inferred - scored, **analysis.seconds},
        model_input=ready.prepared.tensor,
    )


async def _prepared_once_cleared(preparing: Awaitable[_Input], cleared: Awaitable[object] | None) -> _Input:
    """The prepared input, once ``cleared`` (if any) has completed; both run at the same time."""
    if cleared is None:
        return await preparing
    task = asyncio.ensure_future(preparing)
    try:
        await cleared
    except BaseException:
        # Not scored: the preparation (on a worker thread, it cannot be stopped) is left to end, and
        # its outcome, failure included, is retrieved so that nothing logs it as never retrieved.
        task.add_done_callback(_retrieve)
        raise
    return await task


def _retrieve(task: asyncio.Future[_Input]) -> None:
    if not task.cancelled():
        task.exception()


def analyse_now(instance: Instance, served: ServedModel) -> Analysis:
    """:func:`analyse` in the calling thread, the session run directly (benchmarks, evaluation, tools).

    Raises:
        ImageTooSmall: The image is smaller than the model's input.
        ImageUnusable: The decoded image cannot be prepared for the model.
    """
    from inference.runtime import score_batch

    start = time.perf_counter()
    ready = _prepare_checked(instance, served)
    scored = time.perf_counter()
    [output] = score_batch(served, ready.prepared.tensor[None])
    inferred = time.perf_counter()
    analysis = explain(instance, ready.prepared, output, ready.display)
    return Analysis(
        model=analysis.model,
        findings=analysis.findings,
        rendering=analysis.rendering,
        ood=analysis.ood,
        seconds={"preprocess": scored - start, "inference": inferred - scored, **analysis.seconds},
        model_input=ready.prepared.tensor,
    )
