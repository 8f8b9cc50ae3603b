"""Helpers for the model registry tests: a tiny cxr-findings ONNX and a registry on a copied store.

Imported by the test modules as ``_registry_testkit`` (a unique name: test folders have no
``__init__.py``, so a shared ``conftest`` import would be ambiguous).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

import model_registry
from inference.runtime import MetadataKey, imaging_metadata, write_metadata
from inference.vocabulary import FINDINGS

LABELS = list(FINDINGS)


def build_tiny_cxr(path: Path, *, seed: int = 0, size: int = 2) -> str:
    """Write a single-file ONNX honouring the cxr-findings contract and return its sha256.

    ``image [N,1,S,S]`` → ``cam [N,K,1,1]`` (a full-size convolution) and ``logits [N,K]``; the
    metadata keys are those docs/internals.md lists. ``seed`` changes the weights, hence the sha256.
    """
    import onnx
    from onnx import TensorProto, helper

    k = len(LABELS)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((k, 1, size, size)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["cam"], kernel_shape=[size, size]),
            helper.make_node("Flatten", ["cam"], ["logits"], axis=1),
        ],
        "tiny_cxr",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", k, 1, 1]),
        ],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    metadata = imaging_metadata(
        labels=LABELS,
        thresholds=dict.fromkeys(LABELS, 0.5),
        temperature=1.0,
        preprocess={"input_size": size, "mean": 0.5, "std": 0.25, "window_percentiles": [1, 99]},
        synthetic=True,
        training_data="tiny test model, random weights",
        config={"seed": seed},
        ood={"method": "none", "threshold": 1.0e6},
    )
    # A registry test model: no ``ood`` output, so without its key too (the registry never serves it).
    write_metadata(model, {key: value for key, value in metadata.items() if key != MetadataKey.OOD})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Store:
    """A registry client on a private copy of the migrated store, plus helpers to register versions."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        db = root / "mlflow.db"
        root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, db)
        self.tracking_uri = f"sqlite:///{db}"
        self.artifact_root = root / "mlartifacts"
        self.client = model_registry.RegistryClient(self.tracking_uri, self.artifact_root)
        self._seed = 0

    def register(
        self,
        name: str,
        *,
        aurocs: dict[str, float] | None = None,
        parity_passed: bool = True,
        alias: str | None = "challenger",
        extra_metrics: dict[str, float] | None = None,
        dataset: str = "tiny-synthetic (tests)",
        dataset_digest: str | None = None,
    ) -> model_registry.RegisteredVersion:
        """Register a new tiny model version with the given validation AUROC figures (and other metrics)."""
        self._seed += 1
        onnx_path = self.root / "exports" / f"{name}-{self._seed}.onnx"
        sha = build_tiny_cxr(onnx_path, seed=self._seed)
        plot = self.root / "exports" / f"roc-{self._seed}.png"
        plot.write_bytes(b"\x89PNG\r\n\x1a\n not a real plot")
        aurocs = aurocs if aurocs is not None else {f"val_auroc_{c}": 0.9 for c in LABELS}
        metrics = {
            **aurocs,
            "val_macro_auroc": float(np.mean(list(aurocs.values()))),
            "epochs_run": 2,
            **(extra_metrics or {}),
        }
        return self.client.log_and_register(
            name=name,
            onnx_path=onnx_path,
            params={"profile": "test", "optimizer": {"lr": 1e-3, "name": "adamw"}, "seed": self._seed},
            metrics=metrics,
            artifacts=[plot],
            model_card="# Tiny test model\n\nRandom weights; synthetic, not for clinical use.\n",
            dataset=dataset,
            dataset_digest=dataset_digest,
            parity_passed=parity_passed,
            parity_max_abs_diff=1e-6 if parity_passed else 0.5,
            sha256=sha,
            git_commit="0123abc",
            alias=alias,
        )
