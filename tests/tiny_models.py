"""Tiny ONNX models that honour the dxassist artifact contract, and a seeded local model cache.

Built with ``onnx.helper`` and numpy weights only (no torch), so every test of the server runs without
training. The contract is in ``docs/internals.md`` ("ONNX artifacts" and "Registry and cache").

- :func:`build_imaging_onnx`: ``image [N,1,S,S]`` → ``logits [N,K]``, ``cam [N,K,S/8,S/8]``,
  ``ood [N]``. A strided convolution, ReLU, then the classifier weights as a 1x1 convolution give the CAM, and
  ``logits = mean(cam) + bias`` exactly as ``CxrNet`` does. Feature channel 0 fires on patches brighter
  than +1 in normalised units and every finding weighs it positively (the last labels most), so a bright
  blob (a 16x16 patch at +3 in normalised units on a 64x64 input) raises every logit, makes the last
  findings positive and moves the CAM peak onto the blob. ``ood`` is the Mahalanobis form the trained
  model uses, on the spatially pooled features: ``(f - mu)^T P (f - mu)`` with ``mu`` 0 and ``P`` the
  identity over the channel count; the threshold (``ood_threshold``) is huge by default, so every image
  is assessable unless a test asks for a tiny one (:func:`tiny_imaging_reference` computes it in numpy).
- :func:`build_triage_onnx`: ``values, present [N,F]`` → ``logit [N]``, ``contributions [N,F]`` with
  ``contribution_i = present_i * (a_i * relu(v_i - hi_i) + b_i * relu(lo_i - v_i))`` (zero inside a normal
  band, rising linearly outside it, so exactly 0 for a sign not measured and monotone on each side of
  the normal point) and ``logit = intercept + sum(contributions)``.
- :func:`seed_cache`: writes ``<cache>/<name>/<version>/model.onnx`` + ``manifest.json`` and merges the
  aliases into ``<cache>/<name>/aliases.json`` (atomic writes, alias map last).
- :func:`seed_both` seeds both tiny models; :func:`cache_fetcher` is the ``fetch(name, alias)`` a
  ``ModelHost`` takes (``model_registry.ModelCache.resolve_cached`` over that cache).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import inference  # noqa: F401  (switches ONNX Runtime telemetry off before anyone imports it)
from inference.runtime import imaging_metadata as artifact_imaging_metadata
from inference.runtime import triage_metadata, write_metadata
from inference.triage import FEATURES as TRIAGE_FEATURES  # the input order training exports too
from inference.vocabulary import FINDINGS as FIVE_CODES

IMAGING_NAME = "cxr-findings"
TRIAGE_NAME = "vitals-triage"
CAM_STRIDE = 8
OPSET = 17
IR_VERSION = 8

# Triage model: per feature (lo, hi, weight below lo, weight above hi), taken in TRIAGE_FEATURES order.
# Normal bands loosely follow NEWS2.
_TRIAGE_BANDS: dict[str, tuple[float, float, float, float]] = {
    "respiratory_rate": (12.0, 20.0, 0.25, 0.25),
    "spo2": (96.0, 101.0, 0.4, 0.0),
    "on_oxygen": (-1.0, 0.0, 0.0, 1.0),
    "systolic_bp": (110.0, 219.0, 0.06, 0.05),
    "diastolic_bp": (60.0, 110.0, 0.03, 0.02),
    "heart_rate": (51.0, 90.0, 0.06, 0.06),
    "temperature": (36.1, 38.0, 0.8, 0.8),
    "consciousness": (-1.0, 0.0, 0.0, 1.5),
}
TRIAGE_INTERCEPT = -3.0
# Normal point per feature (inside each band: contribution 0), exported as ``dxassist.reference``.
TRIAGE_REFERENCE: dict[str, float] = {
    "respiratory_rate": 16.0,
    "spo2": 98.0,
    "on_oxygen": 0.0,
    "systolic_bp": 120.0,
    "diastolic_bp": 75.0,
    "heart_rate": 70.0,
    "temperature": 37.0,
    "consciousness": 0.0,
}
DEFAULT_OOD_THRESHOLD = 1.0e6
"""The tiny imaging model's OOD threshold unless a test asks for another: every image passes."""


def imaging_metadata(
    *,
    input_size: int,
    labels: Sequence[str],
    thresholds: Mapping[str, float] | None = None,
    temperature: float = 1.0,
    name: str = IMAGING_NAME,
    ood_threshold: float = DEFAULT_OOD_THRESHOLD,
    reference: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``dxassist.*`` metadata of a tiny imaging model, as the artifact module writes it."""
    return artifact_imaging_metadata(
        model_name=name,
        labels=labels,
        thresholds=thresholds if thresholds is not None else dict.fromkeys(labels, 0.5),
        temperature=temperature,
        preprocess={"input_size": input_size, "mean": 0.5, "std": 0.25, "window_percentiles": [1.0, 99.0]},
        synthetic=True,
        training_data="tiny test model with fixed random weights (no training data)",
        config={"builder": "tests/tiny_models.py", "input_size": input_size},
        ood={"method": "mahalanobis-pooled-tiny", "threshold": ood_threshold, "pass_rate": 0.995},
        drift_reference=reference,
    )


def build_imaging_onnx(
    path: Path | str,
    *,
    input_size: int = 64,
    labels: Sequence[str] = FIVE_CODES,
    seed: int = 0,
    temperature: float = 1.0,
    thresholds: Mapping[str, float] | None = None,
    drop_metadata: Sequence[str] = (),
    channels: int = 6,
    ood_threshold: float = DEFAULT_OOD_THRESHOLD,
    reference: Mapping[str, Any] | None = None,
    with_ood: bool = True,
) -> Path:
    """Write a tiny imaging model honouring the ``cxr-findings`` contract and return its path.

    Args:
        path: where to write the ``.onnx`` file.
        input_size: ``S``; must be a multiple of 8 (the CAM stride).
        labels: finding codes in output order.
        seed: seeds the random weights (different seeds give different models and sha256).
        temperature: ``dxassist.temperature``.
        thresholds: code → threshold (0.5 for each when omitted).
        drop_metadata: metadata keys to leave out (to test the server's validation).
        channels: feature channels of the convolution.
        ood_threshold: the OOD threshold in the metadata (a tiny one makes every image not assessable).
        reference: ``dxassist.drift_reference``; left out when None.
        with_ood: False builds a model of the older contract: no ``ood`` output (add
            ``drop_metadata=("dxassist.ood",)`` for its metadata too).
    """
    from onnx import TensorProto, helper, numpy_helper

    if input_size % CAM_STRIDE:
        raise ValueError(f"input_size must be a multiple of {CAM_STRIDE}; got {input_size}.")
    conv_w, conv_b, cls_w, cls_b = _tiny_imaging_weights(seed, len(labels), channels)
    k = len(labels)
    ood_mean = np.zeros((1, channels), dtype=np.float32)
    ood_precision = (np.eye(channels) / channels).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["feat_lin"], strides=[CAM_STRIDE] * 2),
        helper.make_node("Relu", ["feat_lin"], ["feat"]),
        helper.make_node("Conv", ["feat", "cls_w"], ["cam"]),
        helper.make_node("ReduceMean", ["cam"], ["cam_mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Add", ["cam_mean", "cls_b"], ["logits"]),
        helper.make_node("ReduceMean", ["feat"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["pooled", "ood_mean"], ["centred"]),
        helper.make_node("MatMul", ["centred", "ood_precision"], ["weighted"]),
        helper.make_node("Mul", ["weighted", "centred"], ["terms"]),
        helper.make_node("ReduceSum", ["terms", "ood_axes"], ["ood"], keepdims=0),
    ]
    if not with_ood:
        nodes = nodes[:5]
    side = input_size // CAM_STRIDE
    graph = helper.make_graph(
        nodes,
        "tiny_cxr_findings",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, input_size, input_size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["batch", k, side, side]),
            helper.make_tensor_value_info("ood", TensorProto.FLOAT, ["batch"]),
        ][: 3 if with_ood else 2],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(cls_w, "cls_w"),
            numpy_helper.from_array(cls_b, "cls_b"),
            numpy_helper.from_array(ood_mean, "ood_mean"),
            numpy_helper.from_array(ood_precision, "ood_precision"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "ood_axes"),
        ][: 7 if with_ood else 4],
    )
    meta = imaging_metadata(
        input_size=input_size,
        labels=labels,
        thresholds=thresholds,
        temperature=temperature,
        ood_threshold=ood_threshold,
        reference=reference,
    )
    return _save_onnx(graph, meta, drop_metadata=drop_metadata, path=path)


def _save_onnx(
    graph: Any, meta: Mapping[str, str], *, drop_metadata: Sequence[str], path: Path | str
) -> Path:
    """Wrap ``graph`` in a model of the test opset and IR version, stamp ``meta`` but the keys in
    ``drop_metadata``, check it and write it to ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tiny_models"
    )
    model.ir_version = IR_VERSION
    write_metadata(model, {key: value for key, value in meta.items() if key not in drop_metadata})
    onnx.checker.check_model(model, full_check=True)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out))
    return out


def _tiny_imaging_weights(
    seed: int, k: int, channels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convolution and classifier weights of the tiny imaging model (see the module docstring)."""
    rng = np.random.default_rng(seed)
    conv_w = rng.normal(0.0, 0.05, size=(channels, 1, CAM_STRIDE, CAM_STRIDE)).astype(np.float32)
    # Channel 0: mean brightness of the patch; fires where the (normalised) image is bright.
    conv_w[0] = 1.0 / (CAM_STRIDE * CAM_STRIDE)
    conv_b = np.zeros(channels, dtype=np.float32)
    conv_b[0] = -1.0
    cls_w = rng.normal(0.0, 0.1, size=(k, channels, 1, 1)).astype(np.float32)
    cls_w[:, 0, 0, 0] = np.linspace(4.0, 12.0, k, dtype=np.float32) * (
        1.0 + 0.1 * rng.random(k, dtype=np.float32)
    )
    cls_b = np.linspace(-2.0, -0.5, k).astype(np.float32)
    return conv_w, conv_b, cls_w, cls_b


def tiny_imaging_reference(
    image: np.ndarray, *, seed: int = 0, k: int = len(FIVE_CODES), channels: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """What the tiny imaging model computes, in numpy (float64): ``(logits [N, K], ood [N])``.

    The strided convolution has kernel = stride, so it is a reshape into patches and one product.
    """
    conv_w, conv_b, cls_w, cls_b = _tiny_imaging_weights(seed, k, channels)
    n, _, s, _ = image.shape
    cells = s // CAM_STRIDE
    patches = image.astype(np.float64).reshape(n, cells, CAM_STRIDE, cells, CAM_STRIDE)
    feat = (
        np.einsum("naybx,cyx->ncab", patches, conv_w[:, 0].astype(np.float64)) + conv_b[None, :, None, None]
    )
    feat = np.maximum(feat, 0.0)
    pooled = feat.mean(axis=(2, 3))
    logits = pooled @ cls_w[:, :, 0, 0].T.astype(np.float64) + cls_b
    ood = (pooled**2).sum(axis=1) / channels
    return logits, ood


def _triage_bands() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tiny triage model's ``lo``, ``hi``, ``below`` and ``above`` weights, one float32 column each,
    in :data:`TRIAGE_FEATURES` order."""
    lo, hi, below, above = (
        np.array(col, dtype=np.float32)
        for col in zip(*(_TRIAGE_BANDS[name] for name in TRIAGE_FEATURES), strict=True)
    )
    return lo, hi, below, above


def triage_reference(values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the tiny triage model computes, in numpy: ``(logit [N], contributions [N,F])``."""
    lo, hi, below, above = _triage_bands()
    contributions = present * (above * np.maximum(values - hi, 0.0) + below * np.maximum(lo - values, 0.0))
    return TRIAGE_INTERCEPT + contributions.sum(axis=-1), contributions


def build_triage_onnx(
    path: Path | str,
    *,
    temperature: float = 1.0,
    threshold: float = 0.3,
    drop_metadata: Sequence[str] = (),
    missing_contribution: float = 0.0,
) -> Path:
    """Write a tiny additive triage model honouring the ``vitals-triage`` contract and return its path.

    ``missing_contribution`` other than 0 builds a model that breaks the contract (an unmeasured sign
    contributes that much), for the tests that check the server refuses it.
    """
    from onnx import TensorProto, helper, numpy_helper

    f = len(TRIAGE_FEATURES)
    lo, hi, below, above = _triage_bands()
    nodes = [
        helper.make_node("Sub", ["values", "hi"], ["over_raw"]),
        helper.make_node("Relu", ["over_raw"], ["over"]),
        helper.make_node("Mul", ["over", "above"], ["over_w"]),
        helper.make_node("Sub", ["lo", "values"], ["under_raw"]),
        helper.make_node("Relu", ["under_raw"], ["under"]),
        helper.make_node("Mul", ["under", "below"], ["under_w"]),
        helper.make_node("Add", ["over_w", "under_w"], ["raw"]),
        helper.make_node("Mul", ["raw", "present"], ["measured"]),
        helper.make_node("Sub", ["one", "present"], ["absent"]),
        helper.make_node("Mul", ["absent", "leak"], ["leaked"]),
        helper.make_node("Add", ["measured", "leaked"], ["contributions"]),
        helper.make_node("ReduceSum", ["contributions", "sum_axes"], ["total"], keepdims=0),
        helper.make_node("Add", ["total", "intercept"], ["logit"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_vitals_triage",
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", f]),
            helper.make_tensor_value_info("present", TensorProto.FLOAT, ["batch", f]),
        ],
        [
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["batch", f]),
        ],
        initializer=[
            numpy_helper.from_array(lo, "lo"),
            numpy_helper.from_array(hi, "hi"),
            numpy_helper.from_array(below, "below"),
            numpy_helper.from_array(above, "above"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axes"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
            numpy_helper.from_array(np.array(missing_contribution, dtype=np.float32), "leak"),
            numpy_helper.from_array(np.array(TRIAGE_INTERCEPT, dtype=np.float32), "intercept"),
        ],
    )
    meta = triage_metadata(
        model_name=TRIAGE_NAME,
        features=TRIAGE_FEATURES,
        intercept=TRIAGE_INTERCEPT,
        reference=TRIAGE_REFERENCE,
        threshold=threshold,
        temperature=temperature,
        synthetic=True,
        training_data="tiny test model with hand-set weights (no training data)",
        config={"builder": "tests/tiny_models.py"},
    )
    return _save_onnx(graph, meta, drop_metadata=drop_metadata, path=path)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so a watching server never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def seed_cache(
    cache_dir: Path | str,
    name: str,
    onnx_path: Path | str,
    *,
    version: str = "1",
    aliases: Sequence[str] = ("champion",),
) -> Path:
    """Copy ``onnx_path`` into a local model cache as ``name`` version ``version``; return the cached file.

    Writes ``<cache>/<name>/<version>/model.onnx`` and ``manifest.json`` (``source`` = ``seeded``) and
    points each alias at this version in ``<cache>/<name>/aliases.json`` (other aliases are kept; a moved
    alias is removed from the manifest of the version it left).
    """
    root = Path(cache_dir) / name
    version = str(version)
    target_dir = root / version
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "model.onnx"
    _write_atomic(target, Path(onnx_path).read_bytes())
    aliases_file = root / "aliases.json"
    known: dict[str, str] = json.loads(aliases_file.read_text()) if aliases_file.exists() else {}
    for alias in aliases:
        previous = known.get(alias)
        if previous is not None and previous != version:
            old_manifest = root / previous / "manifest.json"
            if old_manifest.exists():
                data = json.loads(old_manifest.read_text())
                data["aliases"] = [a for a in data.get("aliases", []) if a != alias]
                _write_atomic(old_manifest, json.dumps(data, indent=2).encode())
        known[alias] = version
    manifest = {
        "name": name,
        "version": version,
        "sha256": sha256_file(target),
        "aliases": sorted(a for a, v in known.items() if v == version),
        "run_id": None,
        "source": "seeded",
    }
    _write_atomic(target_dir / "manifest.json", json.dumps(manifest, indent=2).encode())
    # The alias map is written last: a reader sees the new version only once its files are complete.
    _write_atomic(aliases_file, json.dumps(known, indent=2, sort_keys=True).encode())
    return target


def read_cache(cache_dir: Path | str, name: str, alias: str) -> Any:
    """Resolve ``alias`` of ``name`` in a seeded cache with the product's own reader.

    Returns a ``model_registry.LocalModel`` (``model_registry.ModelCache.resolve_cached``).
    """
    from model_registry import ModelCache

    return ModelCache(Path(cache_dir)).resolve_cached(name, alias)


def cache_fetcher(cache_dir: Path | str) -> Callable[[str, str], Any]:
    """A ``fetch(name, alias)`` over a seeded cache, as ``inference.runtime.ModelHost`` takes it.

    It is ``model_registry.ModelCache.resolve_cached``: the server's offline path, no registry needed.
    """
    from model_registry import ModelCache

    return ModelCache(Path(cache_dir)).resolve_cached


def seed_both(cache_dir: Path | str, work_dir: Path | str, *, input_size: int = 64) -> Path:
    """Build both tiny models and seed them as ``champion`` version 1; return the cache directory."""
    work = Path(work_dir)
    seed_cache(cache_dir, IMAGING_NAME, build_imaging_onnx(work / "imaging.onnx", input_size=input_size))
    seed_cache(cache_dir, TRIAGE_NAME, build_triage_onnx(work / "triage.onnx"))
    return Path(cache_dir)


def register_both(client: Any, work_dir: Path | str, *, profile: str, **extra: Any) -> dict[str, str]:
    """Build both tiny models under ``work_dir``, register each in ``client``'s registry (a
    ``model_registry.RegistryClient``, parity passed, sha256 tagged) and promote it ``champion``.

    ``extra`` goes to ``log_and_register`` as it is (e.g. ``git_commit``). Returns name → version.
    """
    work = Path(work_dir)
    built = {
        IMAGING_NAME: build_imaging_onnx(work / "imaging.onnx"),
        TRIAGE_NAME: build_triage_onnx(work / "triage.onnx"),
    }
    versions: dict[str, str] = {}
    for name, path in built.items():
        version = client.log_and_register(
            name=name,
            onnx_path=Path(path),
            params={"profile": profile},
            metrics={"val_auroc": 0.9},
            artifacts=None,
            model_card=f"# {name} (tiny test model)\n\nSynthetic; not for clinical use.\n",
            dataset="tiny-synthetic (tests)",
            parity_passed=True,
            parity_max_abs_diff=0.0,
            sha256=sha256_file(Path(path)),
            **extra,
        )
        client.promote(name, version.version)
        versions[name] = version.version
    return versions
