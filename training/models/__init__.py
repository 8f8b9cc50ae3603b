"""Model definitions in plain PyTorch (imported only by training; the server runs their ONNX exports)."""

from training.models._cxr import CxrNet
from training.models._ood import (
    GuardedCxrNet,
    OodNeighbour,
    OodStatistics,
    collect_pooled_features,
    fit_ood_statistics,
    mahalanobis_score,
    pooled_features,
    with_contrast,
    with_neighbour,
)
from training.models._triage import AdditiveTriage

__all__ = [
    "AdditiveTriage",
    "CxrNet",
    "GuardedCxrNet",
    "OodNeighbour",
    "OodStatistics",
    "collect_pooled_features",
    "fit_ood_statistics",
    "mahalanobis_score",
    "pooled_features",
    "with_contrast",
    "with_neighbour",
]
