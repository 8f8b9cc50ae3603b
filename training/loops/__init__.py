"""Training loops with progress bars and per-epoch metrics."""

from training.loops._imaging import (
    EpochStats,
    FitResult,
    fit_imaging,
    localisation_loss,
    localisation_targets,
    macro_auroc,
    predict,
)
from training.loops._threads import torch_threads
from training.loops._triage import TriageEpoch, TriageFit, fit_triage, predict_triage

__all__ = [
    "EpochStats",
    "FitResult",
    "TriageEpoch",
    "TriageFit",
    "fit_imaging",
    "fit_triage",
    "localisation_loss",
    "localisation_targets",
    "macro_auroc",
    "predict",
    "predict_triage",
    "torch_threads",
]
