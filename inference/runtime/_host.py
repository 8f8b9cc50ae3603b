"""``ModelHost``: the served models of one process, their micro-batcher and the hot-swap watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inference.runtime._batcher import BatchHook, MicroBatcher
from inference.runtime._drift import DriftMonitor
from inference.runtime._errors import ConfigurationError, InputRejected, ModelInvalid, ModelUnavailable
from inference.runtime._meta import ModelKind
from inference.runtime._metrics import MODEL_SWAPS
from inference.runtime._outputs import ImagingOutput, TriageOutput, calibrated_probability, is_assessable
from inference.runtime._providers import select_providers
from inference.runtime._served import LocalModelLike, ServedModel, SessionSettings, load_served_model
from inference.runtime._shadow import ShadowQueue

logger = logging.getLogger(__name__)

IMAGING_MODEL = "cxr-findings"
TRIAGE_MODEL = "vitals-triage"
SERVED_ALIAS = "champion"
SHADOW_ALIAS = "challenger"

Fetch = Callable[[str, str], LocalModelLike]
"""``fetch(name, alias)`` → the cached model file (``model_registry.ModelCache.fetch`` bound to a client)."""


class HostSettings(SessionSettings, Protocol):
    """The part of :class:`inference.config.Settings` the host reads."""

    @property
    def batch_max_size(self) -> int: ...
    @property
    def batch_max_wait_ms(self) -> float: ...
    @property
    def model_watch_seconds(self) -> float: ...


@dataclass(frozen=True)
class _ShadowSessionSettings:
    """A challenger's session: the champion's provider, one thread, so it never takes the champion's cores."""

    execution_provider: str
    intra_op_threads: int = 1
    inter_op_threads: int = 1


def _run_imaging(model: ServedModel, stacked: np.ndarray) -> list[ImagingOutput]:
    meta = model.imaging_meta
    logits, cam, ood = model.session.run(["logits", "cam", "ood"], {"image": stacked})
    probabilities = calibrated_probability(logits, meta.temperature)
    thresholds = np.array([meta.thresholds[code] for code in meta.labels])
    # An image the model does not know gets no positive finding, whatever its probabilities say.
    assessable = np.array([is_assessable(float(s), meta.ood.threshold) for s in ood])
    positive = (probabilities >= thresholds) & assessable[:, None]
    return [
        ImagingOutput(
            logits=logits[i],
            probabilities=probabilities[i],
            positive=positive[i],
            cam=cam[i],
            ood_score=float(ood[i]),
            model=model,
        )
        for i in range(stacked.shape[0])
    ]


def score_batch(model: ServedModel, stacked: np.ndarray) -> list[ImagingOutput]:
    """Score a stacked float32 ``[N, 1, S, S]`` batch in the calling thread, without the micro-batcher.

    For benchmarks, evaluation and tools; the server scores through :meth:`ModelHost.score_images`.
    """
    return _run_imaging(model, np.ascontiguousarray(stacked, dtype=np.float32))


def _run_triage(model: ServedModel, values: np.ndarray, present: np.ndarray) -> TriageOutput:
    meta = model.triage_meta
    logit, contributions = model.session.run(
        ["logit", "contributions"], {"values": values[None, :], "present": present[None, :]}
    )
    probability = float(calibrated_probability(logit[0], meta.temperature))
    return TriageOutput(
        logit=float(logit[0]),
        probability=probability,
        positive=probability >= meta.threshold,
        contributions={f: float(c) for f, c in zip(meta.features, contributions[0], strict=True)},
        intercept=meta.intercept,
        model=model,
    )


def score_triage(model: ServedModel, values: np.ndarray, present: np.ndarray) -> TriageOutput:
    """Score encoded vital signs in the calling thread (shadow scoring, tools); checks the shapes.

    Raises:
        InputRejected: wrong shapes or non-finite values.
    """
    f = len(model.triage_meta.features)
    v = np.ascontiguousarray(values, dtype=np.float32)
    m = np.ascontiguousarray(present, dtype=np.float32)
    if v.shape != (f,) or m.shape != (f,) or not (np.isfinite(v).all() and np.isfinite(m).all()):
        raise InputRejected(f"Model {model.name} version {model.version} takes ({f},) finite values.")
    return _run_triage(model, v, m)


class ModelHost:
    """Loads the ``champion`` of each served model, scores requests and swaps in new versions live.

    Nothing is loaded before :meth:`start`. A model that cannot be fetched or loaded at start leaves the
    host not :attr:`ready` (``/readyz`` answers 503) and the watcher keeps trying; a model that fails
    later keeps the version in service.

    Args:
        settings: provider, threads, batching and watch interval (``Settings.runtime``,
            :class:`inference.config.RuntimeSettings`).
        fetch: ``fetch(name, alias)`` returning the cached model (name, version, sha256, path).
        imaging_name: registered name of the imaging model.
        triage_name: registered name of the triage model.
        alias: the alias served.
        on_batch: hook ``(model_name, size, seconds)`` called after every imaging batch.
        device_id: CUDA device used when CUDA is selected; ``settings.cuda_device_id`` when the
            settings have one, else 0.
    """

    def __init__(
        self,
        settings: HostSettings,
        *,
        fetch: Fetch,
        imaging_name: str = IMAGING_MODEL,
        triage_name: str = TRIAGE_MODEL,
        alias: str = SERVED_ALIAS,
        on_batch: BatchHook | None = None,
        device_id: int | None = None,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._names: dict[ModelKind, str] = {"imaging": imaging_name, "triage": triage_name}
        self._alias = alias
        self._on_batch = on_batch
        self._device_id = device_id if device_id is not None else int(getattr(settings, "cuda_device_id", 0))
        self._models: dict[ModelKind, ServedModel] = {}
        # The challenger of each model, scored in the shadow of the champion (absent: no challenger).
        self._challengers: dict[ModelKind, ServedModel] = {}
        # Champion activity, so shadow jobs run only while it is quiet: requests scoring now, last end.
        self._scoring = 0
        self._last_scored = float("-inf")
        self.shadow = ShadowQueue(
            int(getattr(settings, "shadow_queue_size", 0)),
            quiet=float(getattr(settings, "shadow_quiet_ms", 0.0)) / 1000.0,
            idle_since=self.idle_since,
        )
        """Challenger jobs, off the request path (capacity 0: no shadow scoring)."""
        # Why the latest fetched version of a model was refused (cleared once a version loads).
        self._refused: dict[ModelKind, str] = {}
        # Models whose served alias could not be fetched since the last fetch that worked, with the
        # summary ``/readyz`` shows. The reason itself (registry addresses, cache paths, the cache's own
        # checks) goes to the server log only, never to a caller, signed in or not.
        self._unfetched: dict[ModelKind, str] = {}
        self._fetch_error: dict[ModelKind, str] = {}  # the last reason logged
        self._executor: ThreadPoolExecutor | None = None
        self._batcher: MicroBatcher[ImagingOutput] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._refresh_lock: asyncio.Lock | None = None
        self.drift = DriftMonitor(
            window=int(getattr(settings, "drift_window", 500)),
            alert_level=float(getattr(settings, "drift_psi_alert", 0.25)),
            min_observations=int(getattr(settings, "drift_min_observations", 50)),
        )
        """Rolling drift of the imaging results filed by this process, per model version."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load both models (as far as possible) and start the micro-batcher and the watcher.

        Raises:
            ConfigurationError: the provider setting cannot be honoured on this machine.
        """
        if self._batcher is not None:
            return  # already started
        select_providers(self._settings.execution_provider)  # fail fast on an impossible provider setting
        # Two workers: one imaging batch and one triage request can run side by side.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dxassist-ort")
        self._refresh_lock = asyncio.Lock()
        self._batcher = MicroBatcher(
            _run_imaging,
            max_size=self._settings.batch_max_size,
            max_wait=self._settings.batch_max_wait_ms / 1000.0,
            executor=self._executor,
            label=self._names["imaging"],
            on_batch=self._on_batch,
        )
        self._batcher.start()
        self.shadow.start()
        await self.refresh()
        if self._settings.model_watch_seconds > 0:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="model-watcher")

    async def stop(self) -> None:
        """Stop the watcher and the batcher (waiting requests fail with 503) and release the sessions."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
        await self.shadow.stop()
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.stop()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._models.clear()
        self._challengers.clear()

    @property
    def ready(self) -> bool:
        """Both models are loaded and the host is running."""
        return self._batcher is not None and len(self._models) == 2

    @property
    def queue_depth(self) -> int:
        """Imaging requests waiting for the micro-batcher."""
        return self._batcher.depth if self._batcher is not None else 0

    @property
    def batches_run(self) -> int:
        """Imaging batches run since start (one ``session.run`` each)."""
        return self._batcher.batches_run if self._batcher is not None else 0

    def problems(self) -> list[str]:
        """One sentence per model whose latest version was refused (model, version, why, what to run), or
        whose served alias could not be fetched: then only which model and that the server log says why
        (the fetch error names the registry host and cache paths; ``/readyz`` answers without a login)."""
        problems: list[str] = []
        for k in ("imaging", "triage"):
            if k in self._refused:
                problems.append(self._refused[k])
            if k in self._unfetched:
                problems.append(f"{self._unfetched[k]} The server log says why.")
        return problems

    def _current(self, kind: ModelKind) -> ServedModel:
        """The model in service of ``kind``.

        Raises:
            ModelUnavailable: None is loaded. The message names the model and what an administrator can
                do; a fetch error stays in the server log (it names the registry and the cache's folders,
                and this message reaches every caller that needed the model).
        """
        model = self._models.get(kind)
        if model is None:
            if kind in self._refused:
                raise ModelUnavailable(self._refused[kind])
            if kind in self._unfetched:
                raise ModelUnavailable(
                    f"Model {self._names[kind]} is not loaded: its '{self._alias}' version could not be "
                    "fetched. The server log says why; an administrator can make the model registry "
                    "reachable or register a version (`dxassist bootstrap`)."
                )
            raise ModelUnavailable(
                f"Model {self._names[kind]} is not loaded yet (no '{self._alias}' version could be fetched "
                "and loaded); retry later."
            )
        return model

    @property
    def imaging(self) -> ServedModel:
        """The imaging model in service (:class:`ModelUnavailable` when none is loaded)."""
        return self._current("imaging")

    @property
    def triage(self) -> ServedModel:
        """The triage model in service (:class:`ModelUnavailable` when none is loaded)."""
        return self._current("triage")

    def idle_since(self) -> float:
        """``time.monotonic()`` when the champion last finished scoring; ``inf`` while it is scoring."""
        return float("inf") if self._scoring else self._last_scored

    @contextlib.contextmanager
    def _activity(self) -> Iterator[None]:
        self._scoring += 1
        try:
            yield
        finally:
            self._scoring -= 1
            self._last_scored = time.monotonic()

    def challenger(self, kind: ModelKind) -> ServedModel | None:
        """The ``challenger`` of a model when shadow scoring is on and one is registered, else None."""
        return self._challengers.get(kind) if self.shadow.enabled else None

    def models(self) -> list[ServedModel]:
        """The models in service (imaging first), for ``GET /v1/models``."""
        return [self._models[k] for k in ("imaging", "triage") if k in self._models]

    # -- hot swap --------------------------------------------------------------------------------

    async def refresh(self) -> list[ServedModel]:
        """Fetch the served alias of each model and put new versions into service; return those swapped in.

        A new version is loaded and validated completely before the reference is replaced, so requests
        never see a half-built session; requests already running keep the session they started with.
        Fetch or load failures are logged (once per reason), listed by :meth:`problems` (``/readyz``), and
        the version in service stays.
        """
        if self._refresh_lock is None:
            raise ModelUnavailable("The model host is not started.")
        swapped: list[ServedModel] = []
        async with self._refresh_lock:
            loop = asyncio.get_running_loop()
            for kind, name in self._names.items():
                current = self._models.get(kind)
                try:
                    local = await loop.run_in_executor(None, self._fetch, name, self._alias)
                except Exception as e:  # any fetch failure (registry down, empty cache) keeps what is served
                    self._fetch_failed(kind, name, current, e)
                    continue
                self._unfetched.pop(kind, None)
                self._fetch_error.pop(kind, None)
                if (
                    current is not None
                    and current.version == str(local.version)
                    and current.sha256 == local.sha256
                ):
                    continue
                try:
                    served = await loop.run_in_executor(None, self._load, local, kind)
                except (ModelInvalid, ConfigurationError) as e:
                    hint = (
                        " Run `dxassist bootstrap` to train and register a version this server can load."
                        if isinstance(e, ModelInvalid)
                        else ""
                    )
                    problem = f"{name} version {local.version} cannot be served: {e}{hint}"
                    if self._refused.get(kind) != problem:  # the watcher retries: say it once per version
                        logger.error("Refusing %s version %s: %s%s", name, local.version, e, hint)
                    self._refused[kind] = problem
                    continue
                self._refused.pop(kind, None)
                # A single reference assignment: the event loop sees the old or the new model, never a mix.
                self._models[kind] = served
                MODEL_SWAPS.labels(name).inc()
                swapped.append(served)
                if current is None:
                    logger.info("Serving %s version %s.", name, served.version)
                else:
                    logger.info("Swapped %s from version %s to %s.", name, current.version, served.version)
                guard = served.ood_guard
                if guard is not None and not guard["lateral_contrast"]:
                    logger.warning(
                        "%s version %s: its out-of-distribution guard has no lateral contrast (exported "
                        "before it, or trained on data without lateral films): a lateral film whose header "
                        "says frontal may be scored as a frontal. Retrain with ood_contrast_laterals to "
                        "refuse such films (docs/internals.md, the guard).",
                        name,
                        served.version,
                        extra={"event": "model_guard_without_lateral_contrast", "model": name},
                    )
                if guard is not None and not any(n["kind"] == "mirrored" for n in guard["neighbours"]):
                    logger.warning(
                        "%s version %s: its out-of-distribution guard has no mirrored neighbour (exported "
                        "before it, or trained with ood_mirror_weight 0): frontal films mirrored left-right "
                        "will not be refused and may be scored as ordinary frontals. Retrain to refuse them "
                        "(docs/internals.md, the guard).",
                        name,
                        served.version,
                        extra={"event": "model_guard_without_mirrored", "model": name},
                    )
            if self.shadow.enabled:
                for kind, name in self._names.items():
                    await self._refresh_challenger(kind, name)
        return swapped

    def _fetch_failed(
        self, kind: ModelKind, name: str, current: ServedModel | None, error: Exception
    ) -> None:
        """Log a failed fetch once per reason (the log is the only place that says why) and note the
        model as unfetched for ``/readyz`` and the requests that need it."""
        if current is None:
            summary = f"Model {name} is not loaded: its '{self._alias}' version could not be fetched."
        else:
            summary = (
                f"Model {name} keeps version {current.version} in service: its '{self._alias}' version "
                "could not be fetched."
            )
        if self._fetch_error.get(kind) != str(error):  # the watcher retries: say each reason once
            self._fetch_error[kind] = str(error)
            logger.warning(
                "Could not fetch %s@%s; %s: %s",
                name,
                self._alias,
                "no version is in service" if current is None else "keeping the version in service",
                error,
            )
        self._unfetched.setdefault(kind, summary)

    async def _refresh_challenger(self, kind: ModelKind, name: str) -> None:
        """Load the model's ``challenger`` for shadow scoring; none registered (or unloadable): no shadow."""
        loop = asyncio.get_running_loop()
        try:
            local = await loop.run_in_executor(None, self._fetch, name, SHADOW_ALIAS)
        except Exception:  # no challenger is the usual state, not a problem
            if self._challengers.pop(kind, None) is not None:
                logger.info("%s has no challenger any more; shadow scoring stops.", name)
            return
        current = self._challengers.get(kind)
        champion = self._models.get(kind)
        if champion is not None and champion.version == str(local.version):
            self._challengers.pop(kind, None)  # promoted: the champion does not shadow itself
            return
        if current is not None and current.version == str(local.version) and current.sha256 == local.sha256:
            return
        shadow_settings = _ShadowSessionSettings(self._settings.execution_provider)
        try:
            served = await loop.run_in_executor(
                None,
                lambda: load_served_model(
                    local, shadow_settings, alias=SHADOW_ALIAS, expected_kind=kind, device_id=self._device_id
                ),
            )
        except (ModelInvalid, ConfigurationError) as e:
            logger.warning("The challenger %s version %s cannot be shadow-scored: %s", name, local.version, e)
            self._challengers.pop(kind, None)
            return
        self._challengers[kind] = served
        logger.info("Shadow-scoring %s version %s (challenger).", name, served.version)

    def _load(self, local: LocalModelLike, kind: ModelKind) -> ServedModel:
        return load_served_model(
            local, self._settings, alias=self._alias, expected_kind=kind, device_id=self._device_id
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.model_watch_seconds)
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any surprise; the next round tries again
                logger.exception("The model watcher failed; it will try again.")

    # -- scoring ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def expecting_images(self, count: int = 1) -> Iterator[None]:
        """Announce ``count`` images this request is preparing and will pass to :meth:`score_images`
        inside the block, so that a batch already waiting to run waits for them (at most
        ``batch_max_wait_ms``). Without announcements an image is scored at once.

        Wrap the preparation and the :meth:`score_images` call; leaving the block in any way (the image
        cannot be prepared, the request is cancelled) withdraws what was not submitted. Nothing is
        announced while the host is stopped. Vital signs are not batched and need no announcement.
        """
        if self._batcher is None:
            yield
            return
        with self._batcher.expecting(count):
            yield

    async def score_images(
        self, tensors: Sequence[np.ndarray], *, model: ServedModel | None = None
    ) -> list[ImagingOutput]:
        """Score preprocessed images through the micro-batcher.

        Args:
            tensors: float32 ``[1, S, S]`` arrays, ``S`` the model's input size.
            model: the imaging model the tensors were prepared for (its preprocess parameters); the one
                in service when ``None``. Passing it keeps preprocessing and scoring on one version
                across a hot swap.

        Raises:
            ModelUnavailable: no imaging model is loaded, or the host is stopped or overloaded.
            InputRejected: a tensor has the wrong shape, dtype or non-finite values.
        """
        served = model if model is not None else self.imaging
        size = served.imaging_meta.input_size
        for i, tensor in enumerate(tensors):
            if (
                not isinstance(tensor, np.ndarray)
                or tensor.dtype != np.float32
                or tensor.shape != (1, size, size)
            ):
                got = (
                    f"{tensor.dtype} {tensor.shape}"
                    if isinstance(tensor, np.ndarray)
                    else type(tensor).__name__
                )
                raise InputRejected(
                    f"Image tensor {i} is {got}; model {served.name} version {served.version} takes float32 "
                    f"(1, {size}, {size})."
                )
            if not np.isfinite(tensor).all():
                raise InputRejected(f"Image tensor {i} contains NaN or infinite values.")
        if self._batcher is None:
            raise ModelUnavailable("The model host is not started.")
        with self._activity():
            futures = [self._batcher.submit(served, np.ascontiguousarray(t)) for t in tensors]
            return list(await asyncio.gather(*futures))

    async def score_vitals(
        self, values: np.ndarray, present: np.ndarray, *, model: ServedModel | None = None
    ) -> TriageOutput:
        """Score one set of encoded vital signs (``inference.triage.encode_features``).

        Args:
            values: float32 ``[F]`` raw values in contract units, 0 where missing.
            present: float32 ``[F]``, 1 where measured and 0 where missing.
            model: the triage model to use; the one in service when ``None``.

        Raises:
            ModelUnavailable: no triage model is loaded or the host is stopped.
            InputRejected: wrong shapes or non-finite values.
        """
        served = model if model is not None else self.triage
        f = len(served.triage_meta.features)
        arrays = []
        for label, array in (("values", values), ("present", present)):
            a = np.asarray(array, dtype=np.float32)
            if a.shape != (f,):
                raise InputRejected(
                    f"Triage {label} have shape {a.shape}; model {served.name} version {served.version} "
                    f"takes ({f},)."
                )
            if not np.isfinite(a).all():
                raise InputRejected(f"Triage {label} contain NaN or infinite values.")
            arrays.append(np.ascontiguousarray(a))
        if self._executor is None:
            raise ModelUnavailable("The model host is not started.")
        loop = asyncio.get_running_loop()
        with self._activity():
            return await loop.run_in_executor(self._executor, _run_triage, served, arrays[0], arrays[1])
