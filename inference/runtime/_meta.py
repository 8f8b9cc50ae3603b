"""The ``dxassist.*`` metadata of a model artifact: written at export, read and checked when served.

The one module that knows the keys and how each value is encoded. Training's export, the benchmark and
the test models write with :func:`imaging_metadata` / :func:`triage_metadata` and :func:`write_metadata`;
the server parses with :func:`parse_imaging` / :func:`parse_triage`; anyone reads a file's keys back with
:func:`read_metadata`.

The contract is in ``docs/internals.md`` ("ONNX artifacts"): input/output names and shapes with a dynamic
batch axis, and every key the server needs in ``metadata_props``. A model breaking it is refused with
:class:`~inference.runtime.ModelInvalid` when it is loaded, never at the first request.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from inference.preprocess import PreprocessParams
from inference.runtime._drift import DriftReference
from inference.runtime._errors import ModelInvalid

if TYPE_CHECKING:
    from onnx import ModelProto

ModelKind = Literal["imaging", "triage"]


class MetadataKey(StrEnum):
    """The ``metadata_props`` keys of the artifact contract."""

    KIND = "dxassist.kind"
    MODEL_NAME = "dxassist.model_name"
    TEMPERATURE = "dxassist.temperature"
    SYNTHETIC = "dxassist.synthetic"
    TRAINING_DATA = "dxassist.training_data"
    CONFIG = "dxassist.config"
    LABELS = "dxassist.labels"
    THRESHOLDS = "dxassist.thresholds"
    PREPROCESS = "dxassist.preprocess"
    OOD = "dxassist.ood"
    DRIFT_REFERENCE = "dxassist.drift_reference"
    FEATURES = "dxassist.features"
    INTERCEPT = "dxassist.intercept"
    THRESHOLD = "dxassist.threshold"
    REFERENCE = "dxassist.reference"


COMMON_KEYS = (MetadataKey.KIND, MetadataKey.MODEL_NAME, MetadataKey.TEMPERATURE, MetadataKey.SYNTHETIC)
IMAGING_KEYS = (
    *COMMON_KEYS,
    MetadataKey.LABELS,
    MetadataKey.THRESHOLDS,
    MetadataKey.PREPROCESS,
    MetadataKey.OOD,
)
TRIAGE_KEYS = (
    *COMMON_KEYS,
    MetadataKey.FEATURES,
    MetadataKey.INTERCEPT,
    MetadataKey.THRESHOLD,
    MetadataKey.REFERENCE,
)


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """Metadata values as ONNX stores them: strings as they are (kind, name, the data line), the rest JSON."""
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def imaging_metadata(
    *,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    temperature: float,
    preprocess: PreprocessParams | Mapping[str, Any],
    synthetic: bool,
    training_data: str,
    ood: Mapping[str, Any],
    config: Mapping[str, Any],
    model_name: str = "cxr-findings",
    drift_reference: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` of an imaging model, every value encoded as :func:`parse_imaging` reads it.

    Args:
        labels: Finding codes in output order.
        thresholds: Operating threshold per finding code (calibrated probability).
        temperature: Calibration temperature.
        preprocess: How images are prepared (``PreprocessParams`` or its metadata mapping).
        synthetic: Trained on synthetic data.
        training_data: One line naming the data set.
        ood: ``{"method", "threshold", "pass_rate", ...}`` of the out-of-distribution guard.
        config: The training (or building) configuration, kept for the record.
        model_name: Registered model name.
        drift_reference: Validation distributions for the drift monitor (left out when None).
    """
    params = preprocess.to_metadata() if isinstance(preprocess, PreprocessParams) else dict(preprocess)
    return encode_metadata(
        {
            MetadataKey.KIND: "imaging",
            MetadataKey.MODEL_NAME: model_name,
            MetadataKey.LABELS: list(labels),
            MetadataKey.THRESHOLDS: {name: float(value) for name, value in thresholds.items()},
            MetadataKey.TEMPERATURE: float(temperature),
            MetadataKey.PREPROCESS: params,
            MetadataKey.SYNTHETIC: "true" if synthetic else "false",
            MetadataKey.TRAINING_DATA: training_data,
            MetadataKey.CONFIG: dict(config),
            MetadataKey.OOD: dict(ood),
            **({MetadataKey.DRIFT_REFERENCE: dict(drift_reference)} if drift_reference is not None else {}),
        }
    )


def triage_metadata(
    *,
    features: Sequence[str],
    intercept: float,
    reference: Mapping[str, float],
    threshold: float,
    temperature: float,
    synthetic: bool,
    training_data: str,
    config: Mapping[str, Any],
    model_name: str = "vitals-triage",
) -> dict[str, str]:
    """The ``metadata_props`` of a triage model, every value encoded as :func:`parse_triage` reads it."""
    return encode_metadata(
        {
            MetadataKey.KIND: "triage",
            MetadataKey.MODEL_NAME: model_name,
            MetadataKey.FEATURES: list(features),
            MetadataKey.INTERCEPT: float(intercept),
            MetadataKey.REFERENCE: {name: float(value) for name, value in reference.items()},
            MetadataKey.THRESHOLD: float(threshold),
            MetadataKey.TEMPERATURE: float(temperature),
            MetadataKey.SYNTHETIC: "true" if synthetic else "false",
            MetadataKey.TRAINING_DATA: training_data,
            MetadataKey.CONFIG: dict(config),
        }
    )


def write_metadata(model: ModelProto, metadata: Mapping[str, str]) -> None:
    """Replace every ``metadata_props`` entry of ``model`` (an ``onnx.ModelProto``) with ``metadata``."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value


def read_metadata(model: ModelProto | Path | str) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model (a ``ModelProto`` or a file), as ONNX stores them."""
    if isinstance(model, Path | str):
        import onnx

        model = onnx.load(str(model), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


@dataclass(frozen=True)
class OodMeta:
    """How the imaging model's ``ood`` output is read.

    Attributes:
        method: name of the score (e.g. ``mahalanobis-pooled-multidepth``).
        threshold: an image whose score is above it is not assessable by this model.
        pass_rate: share of in-distribution validation images the threshold was chosen to let through.
        lateral_contrast: whether the score adds the lateral contrast term (``contrast`` in the metadata):
            without it, a lateral film whose header says frontal is refused only when it is far from the
            frontal films, which most are not (29 of 100 lateral phantoms were).
        neighbours: names of the known neighbours the score tells apart (``neighbours`` in the
            metadata; ``("lateral",)`` for a model exported with the single ``contrast`` object before
            the list, ``()`` for one without either). ``mirrored``: a frontal film flipped left-right.
        weights: each neighbour's weight in the score, as the metadata records it (the graph holds the
            constant); None for a neighbour whose record has no finite number.
    """

    method: str
    threshold: float
    pass_rate: float | None
    lateral_contrast: bool = False
    neighbours: tuple[str, ...] = ()
    weights: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def refuses_mirrored(self) -> bool:
        """Whether the score refuses frontal films mirrored left-right (its ``mirrored`` neighbour)."""
        return "mirrored" in self.neighbours

    def warnings(self) -> list[str]:
        """A sentence per known neighbour the score does not refuse by design (what ``GET /v1/models``
        lists): a model exported before the neighbour, or trained without it."""
        out: list[str] = []
        if not self.lateral_contrast:
            out.append(
                "Lateral films whose header says frontal are not refused by design (no lateral neighbour): "
                "such a film is refused only when it lies far from the frontal films. Retrain to add it."
            )
        if not self.refuses_mirrored:
            out.append(
                "Frontal films mirrored left-right are not refused by design (no mirrored neighbour): such "
                "a film may be scored as an ordinary frontal. Retrain to add it."
            )
        return out


@dataclass(frozen=True)
class ImagingMeta:
    """Parsed metadata of an imaging (``cxr-findings``) model.

    Attributes:
        labels: finding codes in output order.
        thresholds: operating threshold on the calibrated probability, per finding code.
        temperature: calibration temperature (probability = sigmoid(logit / T)).
        preprocess: how images are prepared for this model.
        synthetic: trained on synthetic data (every result then carries a warning).
        training_data: one line naming the data set, without the folders it names
            (:func:`public_training_data`).
        ood: the out-of-distribution score's method and threshold.
        reference: the validation distributions drift is measured against (None: drift not monitored).
    """

    labels: tuple[str, ...]
    thresholds: Mapping[str, float]
    temperature: float
    preprocess: PreprocessParams
    synthetic: bool
    training_data: str
    ood: OodMeta
    reference: DriftReference | None = None

    @property
    def input_size(self) -> int:
        """Side ``S`` of the square input."""
        return self.preprocess.input_size


@dataclass(frozen=True)
class TriageMeta:
    """Parsed metadata of a triage (``vitals-triage``) model.

    Attributes:
        features: input features in column order.
        intercept: ``logit = intercept + sum(contributions)``; the logit when no sign is measured.
        reference: per feature, the normal point (raw units) where its contribution is 0; the server
            sends it as the value of an unmeasured sign.
        threshold: operating threshold on the calibrated probability.
        temperature: calibration temperature.
        synthetic: trained on synthetic data.
        training_data: one line naming the data set, without the folders it names
            (:func:`public_training_data`).
    """

    features: tuple[str, ...]
    intercept: float
    reference: Mapping[str, float]
    threshold: float
    temperature: float
    synthetic: bool
    training_data: str


@dataclass(frozen=True)
class TensorSpec:
    """Name and shape of one graph input or output (``None`` or a string for a symbolic dimension)."""

    name: str
    shape: tuple[int | str | None, ...]
    type: str = "tensor(float)"


def _json(meta: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise ModelInvalid(f"Metadata key '{key}' must hold JSON; got {meta[key][:80]!r}.") from e


def _number(meta: Mapping[str, str], key: str, *, positive: bool = False, probability: bool = False) -> float:
    value = _json(meta, key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelInvalid(f"Metadata key '{key}' must be a finite JSON number; got {meta[key][:80]!r}.")
    if positive and value <= 0:
        raise ModelInvalid(f"Metadata key '{key}' must be greater than 0; got {value}.")
    if probability and not 0.0 < value < 1.0:
        raise ModelInvalid(
            f"Metadata key '{key}' must be a probability strictly between 0 and 1; got {value}."
        )
    return float(value)


# An absolute or home-relative path (POSIX, Windows drive, UNC), up to the next , ; ( ) or the line's end.
_PATH = r"(?:[A-Za-z]:[\\/]|\\\\|~?/)[^,;()\n]*?(?=\s*(?:[,;()]|$))"
_AT_PATH = re.compile(r"\s+(?:at|in|from|under)\s+" + _PATH)
_BARE_PATH = re.compile(r"(?<![^\s(\"'])" + _PATH)
# The two forms earlier exports wrote (``... data set at {--data} (n=...)``, ``..., training split of the
# data at {--data}``): what follows "at" there is the folder however it was typed, relative ones included.
_EXPORTED_AT = re.compile(r"( data set| split of the data) at \S.*?(?=\s*\(n=\d|$)")


def public_training_data(line: str) -> str:
    """The ``dxassist.training_data`` line as users see it: without the folders it names.

    Earlier exports wrote the folder the data was read from on the ML engineer's machine into the line
    (``... data set at /srv/exports/2026-11 (n=1840 frontal images)``); ``GET /v1/models`` and every
    result's warnings show the line, so a folder (``at``/``in``/``from``/``under`` one; in the two forms
    those exports wrote, whatever follows ``at``, a relative folder too) is left out and a path standing
    alone reads ``a local folder``. The ONNX file keeps the line as it was written.
    """
    return _BARE_PATH.sub("a local folder", _AT_PATH.sub("", _EXPORTED_AT.sub(r"\1", line))).strip()


def _require(
    meta: Mapping[str, str],
    keys: Sequence[str],
    kind: str,
    outputs: Sequence[TensorSpec] = (),
    expected_outputs: Sequence[str] = (),
) -> None:
    """Refuse a model lacking metadata keys, naming any missing output in the same sentence.

    A model exported before a contract change usually lacks both (e.g. the imaging ``ood`` output and
    ``dxassist.ood``): one message naming everything tells the operator what changed.
    """
    missing = [k for k in keys if k not in meta]
    if missing:
        names = {s.name for s in outputs}
        absent = [o for o in expected_outputs if o not in names]
        also = f" and the output(s) {', '.join(absent)}" if absent else ""
        raise ModelInvalid(
            f"The {kind} model lacks the metadata key(s) {', '.join(missing)}{also}; an exported dxassist "
            f"model carries {', '.join(keys)}."
        )


def _synthetic(meta: Mapping[str, str]) -> bool:
    value = meta["dxassist.synthetic"].strip().lower()
    if value not in ("true", "false"):
        raise ModelInvalid(
            f"Metadata key 'dxassist.synthetic' must be 'true' or 'false'; got {value[:20]!r}."
        )
    return value == "true"


def _dynamic(dim: int | str | None) -> bool:
    return dim is None or isinstance(dim, str)


def _check_io(
    specs: Sequence[TensorSpec], expected: Mapping[str, tuple[int | None, ...]], what: str, kind: str
) -> None:
    """Check names, ranks, a dynamic batch axis and the fixed dimensions (``None`` = not checked)."""
    by_name = {s.name: s for s in specs}
    if set(by_name) != set(expected):
        raise ModelInvalid(
            f"The {kind} model's {what} are {sorted(by_name)}; the contract requires exactly "
            f"{sorted(expected)}."
        )
    for name, dims in expected.items():
        spec = by_name[name]
        if spec.type != "tensor(float)":
            raise ModelInvalid(
                f"The {kind} model's {what[:-1]} '{name}' is {spec.type}; float32 is required."
            )
        if len(spec.shape) != len(dims):
            raise ModelInvalid(
                f"The {kind} model's {what[:-1]} '{name}' has rank {len(spec.shape)}; the contract requires "
                f"rank {len(dims)}."
            )
        if not _dynamic(spec.shape[0]):
            raise ModelInvalid(
                f"The {kind} model's {what[:-1]} '{name}' has a fixed batch size {spec.shape[0]}; the batch "
                "axis must be dynamic."
            )
        for axis, (got, want) in enumerate(zip(spec.shape[1:], dims[1:], strict=True), start=1):
            if want is not None and not _dynamic(got) and got != want:
                raise ModelInvalid(
                    f"The {kind} model's {what[:-1]} '{name}' has size {got} on axis {axis}; "
                    f"{want} is required."
                )


def parse_imaging(
    meta: Mapping[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> ImagingMeta:
    """Validate an imaging model's graph and metadata and return the parsed metadata.

    Raises:
        ModelInvalid: anything breaks the ``cxr-findings`` contract.
    """
    _require(meta, IMAGING_KEYS, "imaging", outputs, ("logits", "cam", "ood"))
    labels = _json(meta, "dxassist.labels")
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(c, str) and c for c in labels)
        or len(set(labels)) != len(labels)
    ):
        raise ModelInvalid(
            "Metadata key 'dxassist.labels' must be a non-empty JSON list of distinct finding codes."
        )
    thresholds = _json(meta, "dxassist.thresholds")
    if not isinstance(thresholds, dict) or set(thresholds) != set(labels):
        raise ModelInvalid(
            "Metadata key 'dxassist.thresholds' must be a JSON object with one threshold per label "
            f"({', '.join(labels)})."
        )
    for code, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
            raise ModelInvalid(
                f"The threshold of '{code}' must be a probability strictly between 0 and 1; got {value!r}."
            )
    raw = _json(meta, "dxassist.preprocess")
    if not isinstance(raw, dict) or not {"input_size", "mean", "std", "window_percentiles"} <= set(raw):
        raise ModelInvalid(
            "Metadata key 'dxassist.preprocess' must be a JSON object with input_size, mean, std and "
            "window_percentiles [lo, hi]."
        )
    try:
        preprocess = PreprocessParams.from_metadata(raw)
    except (TypeError, ValueError) as e:
        raise ModelInvalid(f"Metadata key 'dxassist.preprocess' holds unusable values: {e}") from e
    s, k = preprocess.input_size, len(labels)
    _check_io(inputs, {"image": (None, 1, s, s)}, "inputs", "imaging")
    _check_io(
        outputs, {"logits": (None, k), "cam": (None, k, None, None), "ood": (None,)}, "outputs", "imaging"
    )
    return ImagingMeta(
        labels=tuple(labels),
        thresholds={code: float(thresholds[code]) for code in labels},
        temperature=_number(meta, "dxassist.temperature", positive=True),
        preprocess=preprocess,
        synthetic=_synthetic(meta),
        training_data=public_training_data(meta.get("dxassist.training_data", "")),
        ood=_ood(meta),
        reference=_reference(meta),
    )


def _reference(meta: Mapping[str, str]) -> DriftReference | None:
    if "dxassist.drift_reference" not in meta:
        return None
    try:
        return DriftReference.from_metadata(_json(meta, "dxassist.drift_reference"))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ModelInvalid):
            raise
        raise ModelInvalid(f"Metadata key 'dxassist.drift_reference' is unusable: {e}") from e


def _ood(meta: Mapping[str, str]) -> OodMeta:
    raw = _json(meta, "dxassist.ood")
    if not isinstance(raw, dict) or not isinstance(raw.get("method"), str) or "threshold" not in raw:
        raise ModelInvalid(
            "Metadata key 'dxassist.ood' must be a JSON object with 'method' (a name) and 'threshold' "
            "(the score above which an image is not assessable)."
        )
    threshold = raw["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ModelInvalid(f"The OOD threshold must be a finite JSON number; got {threshold!r}.")
    pass_rate = raw.get("pass_rate")
    if pass_rate is not None and (
        isinstance(pass_rate, bool) or not isinstance(pass_rate, int | float) or not 0.0 < pass_rate <= 1.0
    ):
        raise ModelInvalid(f"The OOD pass_rate must be a number in (0, 1]; got {pass_rate!r}.")
    listed = raw.get("neighbours")
    if listed is None:
        # Exported before the list: the single ``contrast`` object is the lateral neighbour.
        contrast = raw.get("contrast")
        listed = [{"name": "lateral", **contrast}] if isinstance(contrast, dict) else []
    elif not (
        isinstance(listed, list)
        and all(isinstance(n, dict) and isinstance(n.get("name"), str) for n in listed)
    ):
        raise ModelInvalid("The OOD 'neighbours' must be a JSON list of objects, each with a 'name'.")
    neighbours = tuple(n["name"] for n in listed)
    return OodMeta(
        method=raw["method"],
        threshold=float(threshold),
        pass_rate=None if pass_rate is None else float(pass_rate),
        lateral_contrast="lateral" in neighbours,
        neighbours=neighbours,
        weights={n["name"]: _weight(n.get("weight")) for n in listed},
    )


def _weight(value: Any) -> float | None:
    """A neighbour's recorded weight; None when it is not a finite number (the record only: the graph
    holds the weight the score uses, so a model is not refused for it)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_triage(
    meta: Mapping[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> TriageMeta:
    """Validate a triage model's graph and metadata and return the parsed metadata.

    Raises:
        ModelInvalid: anything breaks the ``vitals-triage`` contract.
    """
    _require(meta, TRIAGE_KEYS, "triage", outputs, ("logit", "contributions"))
    features = _json(meta, "dxassist.features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and f for f in features)
        or len(set(features)) != len(features)
    ):
        raise ModelInvalid(
            "Metadata key 'dxassist.features' must be a non-empty JSON list of distinct feature names."
        )
    reference = _json(meta, "dxassist.reference")
    if (
        not isinstance(reference, dict)
        or set(reference) != set(features)
        or not all(
            not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
            for v in reference.values()
        )
    ):
        raise ModelInvalid(
            "Metadata key 'dxassist.reference' must be a JSON object with one finite normal value per "
            f"feature ({', '.join(features)})."
        )
    f = len(features)
    _check_io(inputs, {"values": (None, f), "present": (None, f)}, "inputs", "triage")
    _check_io(outputs, {"logit": (None,), "contributions": (None, f)}, "outputs", "triage")
    return TriageMeta(
        features=tuple(features),
        intercept=_number(meta, "dxassist.intercept"),
        reference={name: float(reference[name]) for name in features},
        threshold=_number(meta, "dxassist.threshold", probability=True),
        temperature=_number(meta, "dxassist.temperature", positive=True),
        synthetic=_synthetic(meta),
        training_data=public_training_data(meta.get("dxassist.training_data", "")),
    )
