"""The models a run serves: ``CxrNet`` with fixed random weights exported to ONNX, and the tiny triage model.

Random weights are enough to measure speed (ONNX Runtime and PyTorch do the same arithmetic whatever the
values). The thresholds are set after export so that exactly ``positives`` findings are positive on the
benchmark image (by default all of them, as on a film with several abnormalities). A network with random
weights scores every image about the same (probabilities within 0.05 of 0.5 on phantoms, flat, inverted
and noise images alike), so no second image could be negative for every finding: the study where no
finding is positive is the same image served by a second version of the model whose thresholds lie
above its probabilities (:func:`seed_version`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.runtime import MetadataKey, encode_metadata, imaging_metadata, read_metadata, write_metadata
from inference.vocabulary import FINDINGS as LABELS

IMAGING_NAME = "cxr-findings"
TRIAGE_NAME = "vitals-triage"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ImagingModel:
    """An exported imaging model.

    Attributes:
        path: The ONNX file.
        module: The PyTorch module it was exported from (None for the onnx.helper fallback).
        architecture: What was built, for the report.
        input_size: Side S of the input.
        preprocess: The ``dxassist.preprocess`` metadata.
    """

    path: Path
    module: Any
    architecture: str
    input_size: int
    preprocess: dict[str, Any]


def quick_profile_input_size() -> int:
    """The input size of the ``quick`` training profile (what ``dxassist bootstrap`` serves)."""
    from training.pipeline import ImagingConfig

    return int(ImagingConfig.from_profile("quick").input_size)


def _tests_on_path() -> None:
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def build_imaging(work: Path, *, input_size: int, seed: int = 0) -> ImagingModel:
    """Build ``CxrNet`` as the quick profile configures it (input ``input_size``) and export it to ONNX."""
    import torch

    from training.export import export_onnx
    from training.models import CxrNet, GuardedCxrNet, collect_pooled_features, fit_ood_statistics
    from training.pipeline import ImagingConfig

    cfg = ImagingConfig.from_profile("quick", input_size=input_size)
    torch.manual_seed(seed)
    module = CxrNet(len(LABELS), widths=cfg.widths, depths=cfg.depths, strides=cfg.strides).eval()
    preprocess = {"input_size": input_size, "mean": 0.5, "std": 0.25, "window_percentiles": [0.5, 99.5]}
    metadata = imaging_metadata(
        model_name=IMAGING_NAME,
        labels=LABELS,
        thresholds=dict.fromkeys(LABELS, 0.5),
        temperature=1.0,
        preprocess=preprocess,
        synthetic=True,
        training_data="benchmark model: CxrNet with fixed random weights, never trained",
        config={**cfg.to_dict(), "builder": "benchmarks/_model.py", "seed": seed},
        # A huge threshold: every benchmark image is assessable, so the full path (heatmaps) is timed.
        ood={"method": "mahalanobis-pooled-multidepth", "threshold": 1.0e12, "pass_rate": 0.995},
    )
    rng = np.random.default_rng(seed)
    example = rng.standard_normal((2, 1, input_size, input_size), dtype=np.float32)
    # The OOD statistics cost the same whatever they were fitted on; random images keep this offline.
    fitted_on = rng.standard_normal((32, 1, input_size, input_size), dtype=np.float32)
    guarded = GuardedCxrNet(module, fit_ood_statistics(collect_pooled_features(module, fitted_on))).eval()
    path = work / f"cxr-findings-{input_size}.onnx"
    # Random weights give large activations; the parity check only guards the export here.
    export_onnx(
        guarded,
        {"image": example},
        ["logits", "cam", "ood"],
        path,
        metadata=metadata,
        parity_outputs=["logits"],
        tolerance=1e-2,
    )
    widths = "-".join(map(str, cfg.widths))
    return ImagingModel(
        path=path,
        module=guarded,
        architecture=f"CxrNet widths {widths}, depths {'-'.join(map(str, cfg.depths))} (quick profile)",
        input_size=input_size,
        preprocess=preprocess,
    )


def build_tiny_imaging(work: Path, *, input_size: int) -> ImagingModel:
    """Fallback when ``training`` is not installed: the onnx.helper model of ``tests/tiny_models.py``."""
    _tests_on_path()
    from tiny_models import build_imaging_onnx

    size = input_size - input_size % 8
    path = build_imaging_onnx(work / f"tiny-imaging-{size}.onnx", input_size=size)
    preprocess = json.loads(read_metadata(path)[MetadataKey.PREPROCESS])
    return ImagingModel(path, None, "tiny onnx.helper model (training not installed)", size, preprocess)


def set_thresholds(path: Path, probabilities: np.ndarray, *, positives: int) -> dict[str, float]:
    """Rewrite ``dxassist.thresholds`` so the ``positives`` most probable findings are positive.

    Each threshold sits halfway between the finding's probability and 0 (positive) or 1 (negative), so
    the small differences between decode paths (reduced-resolution JPEG 2000) do not flip a finding.
    """
    import onnx

    order = np.argsort(-probabilities)
    thresholds: dict[str, float] = {}
    for rank, index in enumerate(order):
        p = float(probabilities[index])
        value = p / 2 if rank < positives else (1 + p) / 2
        thresholds[LABELS[index]] = float(min(max(value, 1e-6), 1 - 1e-6))
    model = onnx.load(str(path))
    write_metadata(model, {**read_metadata(model), **encode_metadata({MetadataKey.THRESHOLDS: thresholds})})
    onnx.save_model(model, str(path))
    return thresholds


def seed_version(home: Path, imaging: Path, version: str) -> None:
    """Seed another version of the imaging model in ``home``'s cache and make it ``champion``."""
    _tests_on_path()
    from tiny_models import seed_cache

    seed_cache(home / "models", IMAGING_NAME, imaging, version=version, aliases=("champion",))


def seed_home(home: Path, imaging: Path, work: Path) -> None:
    """Seed ``home``'s model cache with the imaging model and the tiny triage model as ``champion``."""
    _tests_on_path()
    from tiny_models import build_triage_onnx, seed_cache

    cache = home / "models"
    seed_cache(cache, IMAGING_NAME, imaging, version="1", aliases=("champion",))
    seed_cache(
        cache, TRIAGE_NAME, build_triage_onnx(work / "triage.onnx"), version="1", aliases=("champion",)
    )
