"""One served model: its ONNX Runtime session, identity and parsed metadata, built and checked on load."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.runtime._errors import ConfigurationError, ModelInvalid
from inference.runtime._meta import (
    ImagingMeta,
    MetadataKey,
    ModelKind,
    TensorSpec,
    TriageMeta,
    parse_imaging,
    parse_triage,
)
from inference.runtime._providers import CUDA, provider_options, select_providers

logger = logging.getLogger(__name__)


class LocalModelLike(Protocol):
    """What a model fetch returns (``model_registry.LocalModel`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def path(self) -> Path: ...


class SessionSettings(Protocol):
    """The part of :class:`inference.config.Settings` that shapes a session."""

    @property
    def execution_provider(self) -> str: ...
    @property
    def intra_op_threads(self) -> int: ...
    @property
    def inter_op_threads(self) -> int: ...


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded model version ready to score, immutable so a reference to it is a consistent snapshot.

    Attributes:
        name: registered model name (``cxr-findings`` or ``vitals-triage``).
        version: registry version, as a string.
        sha256: sha256 of the ONNX file.
        alias: the alias it is served under (``champion``).
        kind: ``imaging`` or ``triage``.
        provider: the execution provider the session actually uses.
        meta: parsed ``dxassist.*`` metadata.
        session: the ONNX Runtime session (thread-safe for concurrent ``run``).
        path: the cached ONNX file.
    """

    name: str
    version: str
    sha256: str
    alias: str
    kind: ModelKind
    provider: str
    meta: ImagingMeta | TriageMeta
    session: Any = field(repr=False)
    path: Path = field(repr=False)

    @property
    def synthetic(self) -> bool:
        """Whether the model was trained on synthetic data."""
        return self.meta.synthetic

    @property
    def training_data(self) -> str | None:
        """The one line naming the data it was trained on (``dxassist.training_data``); None when the
        file does not say."""
        return self.meta.training_data.strip() or None

    @property
    def ood_guard(self) -> dict[str, Any] | None:
        """What the imaging model's out-of-distribution guard is (None for a triage model): its score's
        method, threshold, whether it refuses lateral films tagged as frontal by design, the known
        neighbours it refuses (``kind``, ``weight``) and a sentence per known neighbour it does not."""
        if not isinstance(self.meta, ImagingMeta):
            return None
        ood = self.meta.ood
        return {
            "method": ood.method,
            "threshold": ood.threshold,
            "lateral_contrast": ood.lateral_contrast,
            "neighbours": [{"kind": kind, "weight": ood.weights.get(kind)} for kind in ood.neighbours],
            "warnings": ood.warnings(),
        }

    @property
    def imaging_meta(self) -> ImagingMeta:
        """The metadata of an imaging model (``TypeError`` for a triage model)."""
        if not isinstance(self.meta, ImagingMeta):
            raise TypeError(f"Model '{self.name}' is a {self.kind} model, not an imaging model.")
        return self.meta

    @property
    def triage_meta(self) -> TriageMeta:
        """The metadata of a triage model (``TypeError`` for an imaging model)."""
        if not isinstance(self.meta, TriageMeta):
            raise TypeError(f"Model '{self.name}' is a {self.kind} model, not a triage model.")
        return self.meta

    def describe(self) -> dict[str, str]:
        """The public description listed by ``GET /v1/models``."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "sha256": self.sha256,
            "provider": self.provider,
            "kind": self.kind,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _specs(args: Any) -> list[TensorSpec]:
    return [TensorSpec(name=a.name, shape=tuple(a.shape), type=a.type) for a in args]


def make_session(path: Path, settings: SessionSettings, *, device_id: int = 0) -> Any:
    """Create an ``InferenceSession`` with the settings' threads and provider, all graph optimisations on.

    Raises:
        ConfigurationError: CUDA was required and the session could not use it.
        ModelInvalid: ONNX Runtime cannot load the file.
    """
    import onnxruntime as ort

    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    providers = select_providers(settings.execution_provider)
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle ORT threads spinning between runs steal the core the next decode needs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=provider_options(providers, device_id=device_id)
        )
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types, all meaning "cannot load"
        # ORT quotes the file's full path (the server's cache folder); the message reaches ``/readyz``,
        # which answers without a login, so it names the file only.
        reason = str(e).replace(str(path), path.name)
        raise ModelInvalid(f"ONNX Runtime could not load the model file {path.name}: {reason}") from e
    actual = session.get_providers()
    if settings.execution_provider == "cuda" and CUDA not in actual:
        raise ConfigurationError(
            "DXASSIST_EXECUTION_PROVIDER is 'cuda' but ONNX Runtime fell back to the CPU for this session; "
            "check the CUDA and cuDNN libraries onnxruntime-gpu needs, or use 'auto'."
        )
    return session


def load_served_model(
    local: LocalModelLike,
    settings: SessionSettings,
    *,
    alias: str = "champion",
    expected_kind: ModelKind | None = None,
    device_id: int = 0,
) -> ServedModel:
    """Build a session for a cached model file and check it against the ONNX artifact contract.

    Args:
        local: the cached model (name, version, sha256, path).
        settings: provider and thread settings.
        alias: the alias it is served under.
        expected_kind: refuse a model of the other kind (``None`` accepts either).
        device_id: CUDA device when CUDA is used.

    Raises:
        ModelInvalid: the file is missing, its sha256 differs, or it breaks the contract.
        ConfigurationError: the provider setting cannot be honoured.
    """
    path = Path(local.path)
    if not path.is_file():
        raise ModelInvalid(
            f"The model file for {local.name} version {local.version} is missing from the cache."
        )
    digest = _sha256(path)
    if digest != local.sha256:
        raise ModelInvalid(
            f"The cached file of {local.name} version {local.version} has sha256 {digest[:12]}…, not the "
            f"registered {local.sha256[:12]}…; the cache is corrupt or was changed."
        )
    session = make_session(path, settings, device_id=device_id)
    meta_map = dict(session.get_modelmeta().custom_metadata_map)
    declared = meta_map.get(MetadataKey.KIND)
    if declared not in ("imaging", "triage"):
        raise ModelInvalid(
            f"Model {local.name} version {local.version} has dxassist.kind {declared!r}; "
            "'imaging' or 'triage' is required."
        )
    kind: ModelKind = "imaging" if declared == "imaging" else "triage"
    if expected_kind is not None and kind != expected_kind:
        raise ModelInvalid(
            f"Model {local.name} version {local.version} is a {kind} model; a {expected_kind} model "
            "is served under this name."
        )
    embedded = meta_map.get("dxassist.model_name")
    if embedded is not None and embedded != local.name:
        raise ModelInvalid(
            f"Model file registered as '{local.name}' says it is '{embedded}' (dxassist.model_name); it was "
            "registered under the wrong name."
        )
    inputs, outputs = _specs(session.get_inputs()), _specs(session.get_outputs())
    meta: ImagingMeta | TriageMeta = (
        parse_imaging(meta_map, inputs, outputs)
        if kind == "imaging"
        else parse_triage(meta_map, inputs, outputs)
    )
    if isinstance(meta, TriageMeta):
        _probe_triage(session, meta, f"{local.name} version {local.version}")
    served = ServedModel(
        name=local.name,
        version=str(local.version),
        sha256=digest,
        alias=alias,
        kind=kind,
        provider=session.get_providers()[0],
        meta=meta,
        session=session,
        path=path,
    )
    logger.info("Loaded model %s version %s on %s.", served.name, served.version, served.provider)
    return served


@dataclass(frozen=True)
class _CheckSettings:
    """One CPU thread: checking a model needs no accelerator and must not compete with a running server."""

    execution_provider: str = "cpu"
    intra_op_threads: int = 1
    inter_op_threads: int = 1


def serving_problem(local: LocalModelLike, kind: ModelKind) -> str | None:
    """Why this server would refuse to serve ``local`` as a ``kind`` model; ``None`` when it loads.

    It is :func:`load_served_model` itself (on the CPU), so ``dxassist bootstrap`` judges a registered
    champion by exactly the checks ``dxassist serve`` applies: sha256, ONNX Runtime, inputs and outputs,
    every ``dxassist.*`` key and the triage probe rows.
    """
    try:
        load_served_model(local, _CheckSettings(), expected_kind=kind)
    except ModelInvalid as e:
        return str(e)
    return None


# A sign not measured must contribute exactly 0 and the contributions must add up to the logit: checked
# on probe rows when the model is loaded, so a model breaking the explanation contract is never served.
_SUM_TOLERANCE = 1e-4


def _probe_triage(session: Any, meta: TriageMeta, label: str) -> None:
    """Refuse a triage model whose unmeasured signs contribute or whose contributions do not sum up.

    Raises:
        ModelInvalid: the probe rows break the contract.
    """
    f = len(meta.features)
    reference = np.array([meta.reference[name] for name in meta.features], dtype=np.float32)
    # Row 0: nothing measured; row 1 + j: only sign j measured; last row: everything measured.
    present = np.vstack([np.zeros((1, f)), np.eye(f), np.ones((1, f))]).astype(np.float32)
    # Measured signs far from normal, unmeasured ones at an arbitrary value: only ``present`` may matter.
    values = np.where(present > 0, reference * 1.3 + 1.0, reference + 5.0).astype(np.float32)
    logit, contributions = session.run(["logit", "contributions"], {"values": values, "present": present})
    unmeasured = np.abs(np.where(present > 0, 0.0, contributions))
    if float(unmeasured.max()) != 0.0:
        raise ModelInvalid(
            f"Model {label} gives a non-zero contribution ({float(unmeasured.max()):.3g}) to a sign that "
            "was not measured; the triage contract requires exactly 0."
        )
    gap = np.abs(meta.intercept + contributions.sum(axis=1) - logit)
    if not np.all(np.isfinite(gap)) or float(gap.max()) > _SUM_TOLERANCE:
        raise ModelInvalid(
            f"Model {label}: intercept + contributions differs from the logit by "
            f"{float(np.nanmax(gap)):.3g}; the triage contract requires at most {_SUM_TOLERANCE:g}."
        )
