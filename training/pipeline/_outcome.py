"""``TrainingOutcome``: what a training pipeline hands to the registry and the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainingOutcome:
    """The result of one training run, ready to be logged and registered.

    Attributes:
        model_name: Registered model name, ``vitals-triage`` or ``cxr-findings``.
        onnx_path: The exported single-file ONNX model.
        params: The flattened training config.
        metrics: ``test_*`` and ``val_*`` figures.
        artifacts: PNG plots, metrics JSON, model card file.
        model_card: Markdown: intended use, data (synthetic or not), metrics with CIs, limits.
        dataset: The data set's name.
        parity_passed: Whether ONNX Runtime matched PyTorch within tolerance.
        parity_max_abs_diff: The largest absolute difference found by the parity check.
        sha256: SHA-256 of the ONNX file.
        history: One mapping per training epoch (``epoch`` and that epoch's figures, e.g.
            ``train_loss``, ``val_loss``), logged as the run's training curves.
        dataset_digest: The digest of the data set's content when it has one (a ``dxassist-export``'s
            checked ``content_sha256``), tagged on the registered version; ``None`` otherwise.
    """

    model_name: str  # 'vitals-triage' / 'cxr-findings'
    onnx_path: Path
    params: dict[str, Any]  # flattened config
    metrics: dict[str, float]  # test_* and val_* figures
    artifacts: list[Path]  # PNG plots, metrics JSON, model card file
    model_card: str  # Markdown: intended use, data (SYNTHETIC, say so), metrics with CIs, limits
    dataset: str
    parity_passed: bool
    parity_max_abs_diff: float
    sha256: str
    history: list[dict[str, float]] = field(default_factory=list)
    dataset_digest: str | None = None
