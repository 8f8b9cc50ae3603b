"""dxassist model registry: the only package that talks to MLflow.

Importing the package switches off the telemetry of ONNX Runtime and MLflow before either is
imported anywhere in the process: the product never phones home.
"""

import os as _os

for _key, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
):
    _os.environ.setdefault(_key, _value)


from pathlib import Path as _Path  # noqa: E402
from typing import Protocol as _Protocol  # noqa: E402

from model_registry._cache import ModelCache  # noqa: E402
from model_registry._client import CHALLENGER, CHAMPION, RegistryClient  # noqa: E402
from model_registry._errors import (  # noqa: E402
    IntegrityError,
    ModelUnavailable,
    NotFound,
    PromotionRefused,
    RegistryError,
    RegistryUnreachable,
)
from model_registry._gate import (  # noqa: E402
    DEFAULT_TOLERANCE,
    MONOTONICITY_FIGURE,
    MONOTONICITY_TOLERANCE,
    evaluate_gate,
    is_gate_figure,
)
from model_registry._hashing import sha256_file  # noqa: E402
from model_registry._types import (  # noqa: E402
    EvidenceCheck,
    FigureComparison,
    GateDecision,
    LocalModel,
    ModelSummary,
    RegisteredVersion,
    ShadowEvidence,
)


class RegistrySettings(_Protocol):
    """What :func:`fetch` needs from a settings object (``inference.config.Settings`` fits)."""

    @property
    def tracking_uri(self) -> str: ...

    @property
    def artifact_root(self) -> _Path: ...

    @property
    def model_cache(self) -> _Path: ...


def fetch(name: str, alias: str, settings: RegistrySettings) -> LocalModel:
    """Fetch ``name``/``alias`` into the cache named by ``settings`` (registry first, cache as fallback).

    Shorthand for ``ModelCache(settings.model_cache).fetch(name, alias, client=RegistryClient(...))``.
    """
    client = RegistryClient(settings.tracking_uri, settings.artifact_root)
    return ModelCache(settings.model_cache).fetch(name, alias, client=client)


__all__ = [
    "EvidenceCheck",
    "ShadowEvidence",
    "MONOTONICITY_FIGURE",
    "MONOTONICITY_TOLERANCE",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_TOLERANCE",
    "FigureComparison",
    "GateDecision",
    "IntegrityError",
    "LocalModel",
    "ModelCache",
    "ModelSummary",
    "ModelUnavailable",
    "NotFound",
    "PromotionRefused",
    "RegisteredVersion",
    "RegistryClient",
    "RegistryError",
    "RegistrySettings",
    "RegistryUnreachable",
    "evaluate_gate",
    "fetch",
    "is_gate_figure",
    "sha256_file",
]
