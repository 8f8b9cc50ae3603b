"""Log a trained model to MLflow and register it as a new version (used by RegistryClient)."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from model_registry._errors import IntegrityError, RegistryError
from model_registry._gate import is_gate_tag_figure
from model_registry._hashing import sha256_file
from model_registry._mlflow import import_mlflow

_log = logging.getLogger(__name__)

_PARAM_VALUE_MAX = 6000
_BATCH = 100
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
_IMAGE_SUFFIXES = frozenset({".png", ".svg", ".jpg", ".jpeg", ".pdf"})
_CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".safetensors"})
_ROOT_FILES = frozenset({"metrics.json", "params.json", "model_card.md"})
CURVE_PREFIX = "epoch/"

Artifacts = Mapping[str, Path | str] | Iterable[Path | str] | None


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings to ``a.b`` keys with string values MLflow accepts."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = _KEY_UNSAFE.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            out.update(flat_params(value, prefix=f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        out[name] = text[:_PARAM_VALUE_MAX]
    return out


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep the finite numbers of ``metrics`` (MLflow metrics are floats; the rest goes to metrics.json)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[_KEY_UNSAFE.sub("_", key)] = float(value)
    return out


def onnx_signature(onnx_path: Path) -> Any:
    """Build an MLflow signature from the ONNX graph with the batch, height and width left dynamic.

    MLflow's own inference from an input example would pin every dimension; the server feeds any batch
    size, so the batch axis (and, for 4-D images, the spatial axes) are ``-1``.
    """
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    model = onnx.load(str(onnx_path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise RegistryError(
                f"The ONNX file {onnx_path.name} keeps weights in external data files; only single-file "
                "models are accepted (export with save_as_external_data=False)."
            )

    def spec(value_info: Any) -> Any:
        tensor_type = value_info.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        if dims:
            dims[0] = -1
        if len(dims) == 4:
            dims[2] = dims[3] = -1
        return TensorSpec(dtype, tuple(dims), value_info.name)

    initializers = {t.name for t in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [spec(v) for v in model.graph.output]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    """Return the id of experiment ``dxassist/<name>``, creating it with ``artifact_location`` if needed."""
    mlflow = import_mlflow()
    experiment_name = f"dxassist/{name}"
    existing = client.get_experiment_by_name(experiment_name)
    if existing is not None:
        return str(existing.experiment_id)
    try:
        return str(client.create_experiment(experiment_name, artifact_location=artifact_location))
    except mlflow.exceptions.MlflowException:
        # Another process created it between our look-up and create: use theirs.
        existing = client.get_experiment_by_name(experiment_name)
        if existing is None:
            raise
        return str(existing.experiment_id)


def epoch_metrics(history: Sequence[Mapping[str, Any]], timestamp: int) -> list[Any]:
    """The training curves of ``history`` as MLflow metrics, one step per epoch.

    Each entry's ``epoch`` (1, 2, ...) is the step; its other finite figures are logged under
    ``epoch/<figure>`` so they never hide the run's final figures (MLflow shows a key's last step).
    Entries without an epoch number take their position (1-based).
    """
    from mlflow.entities import Metric

    out: list[Any] = []
    for position, entry in enumerate(history, start=1):
        raw = entry.get("epoch", position)
        step = int(raw) if isinstance(raw, int | float) and math.isfinite(float(raw)) else position
        figures = numeric_metrics({k: v for k, v in entry.items() if k != "epoch"})
        out.extend(Metric(f"{CURVE_PREFIX}{key}", value, timestamp, step) for key, value in figures.items())
    return out


def log_run(
    client: Any,
    *,
    experiment: str,
    name: str,
    onnx_path: Path,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    artifacts: Artifacts,
    model_card: str | Path,
    dataset: str,
    sha256: str,
    git_commit: str,
    version_tags: Mapping[str, str],
) -> tuple[str, str, str]:
    """Create a run with params, metrics, plots and card, and a logged ONNX model under it.

    ``history`` (one mapping per epoch) becomes the run's training curves: see :func:`epoch_metrics`.

    Returns:
        ``(run_id, model_id, artifact_location)`` of the finished run and its READY logged model.
    """
    mlflow = import_mlflow()
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param
    from mlflow.models import Model

    actual = sha256_file(onnx_path)
    if actual != sha256:
        raise IntegrityError(
            f"The ONNX file {onnx_path.name} has sha256 {actual[:12]}..., not the {sha256[:12]}... the "
            "export reported; refusing to register a file that changed after export."
        )
    signature = onnx_signature(onnx_path)
    card = model_card.read_text(encoding="utf-8") if isinstance(model_card, Path) else model_card
    flat = flat_params(params)
    numbers = numeric_metrics(metrics)

    run = client.create_run(
        experiment,
        run_name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={"dxassist.model_name": name, "dataset": dataset, "git_commit": git_commit},
    )
    run_id: str = run.info.run_id
    model_id: str | None = None
    try:
        now = int(time.time() * 1000)
        items = list(flat.items())
        for start in range(0, len(items), _BATCH):
            client.log_batch(run_id, params=[Param(k, v) for k, v in items[start : start + _BATCH]])
        all_metrics = [Metric(k, v, now, 0) for k, v in numbers.items()] + epoch_metrics(history, now)
        for start in range(0, len(all_metrics), _BATCH):
            client.log_batch(run_id, metrics=all_metrics[start : start + _BATCH])
        provided: set[str] = set()
        for path in _artifact_paths(artifacts):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
                continue
            folder = _artifact_folder(path)
            if folder is None:
                provided.add(path.name)
            client.log_artifact(run_id, str(path), artifact_path=folder)
        # Files the training run did not write itself are made here, so every run has all three.
        if "metrics.json" not in provided:
            client.log_dict(run_id, json.loads(json.dumps(dict(metrics), default=str)), "metrics.json")
        if "params.json" not in provided:
            client.log_dict(run_id, json.loads(json.dumps(dict(params), default=str)), "params.json")
        if "model_card.md" not in provided:
            client.log_text(run_id, card, "model_card.md")

        logged = client.create_logged_model(
            experiment_id=experiment,
            name="model",
            source_run_id=run_id,
            tags={"sha256": sha256, "dataset": dataset},
            params=dict(list(flat.items())[:_BATCH]),
            model_type="onnx",
        )
        model_id = logged.model_id
        with tempfile.TemporaryDirectory(prefix="dxassist-register-") as tmp:
            local = Path(tmp) / "model"
            mlflow_model = Model(
                artifact_path=logged.artifact_location,
                model_uuid=model_id,
                run_id=run_id,
                model_id=model_id,
            )
            import onnx

            mlflow.onnx.save_model(
                onnx.load(str(onnx_path)),
                path=str(local),
                mlflow_model=mlflow_model,
                signature=signature,
                save_as_external_data=False,
                pip_requirements=["onnxruntime", "onnx"],
                metadata={"sha256": sha256, "dataset": dataset, **dict(version_tags)},
            )
            saved = local / "model.onnx"
            if sha256_file(saved) != sha256:
                # onnx re-serialises the proto; keep the exact bytes that passed the parity check so
                # the sha256 servers verify is the one training reported.
                shutil.copyfile(onnx_path, saved)
            (local / "model_card.md").write_text(card, encoding="utf-8")
            client.log_model_artifacts(model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        _finish_failed(client, run_id, model_id)
        raise
    return run_id, model_id, str(logged.artifact_location)


def gate_tags(metrics: Mapping[str, Any]) -> dict[str, str]:
    """The gate figures of ``metrics`` as version tags (``repr`` keeps every digit)."""
    return {k: repr(v) for k, v in numeric_metrics(metrics).items() if is_gate_tag_figure(k)}


def _artifact_folder(path: Path) -> str | None:
    """Where a run artifact goes: plots, checkpoints, reports, or the run root for the standard files."""
    if path.name in _ROOT_FILES:
        return None
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return "plots"
    if suffix in _CHECKPOINT_SUFFIXES:
        return "checkpoints"
    return "reports"


def _artifact_paths(artifacts: Artifacts) -> list[Path]:
    if artifacts is None:
        return []
    values = artifacts.values() if isinstance(artifacts, Mapping) else artifacts
    paths = [Path(v) for v in values]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise RegistryError(f"Artifact file(s) {', '.join(missing)} do not exist; nothing was registered.")
    return paths


def _finish_failed(client: Any, run_id: str, model_id: str | None) -> None:
    from mlflow.entities import LoggedModelStatus

    try:
        if model_id is not None:
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        client.set_terminated(run_id, "FAILED")
    except Exception:  # the original error matters more than this clean-up
        _log.warning("Could not mark MLflow run %s as failed.", run_id, exc_info=True)
