"""Plain value types returned by the registry client and the model cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version as the registry describes it.

    Attributes:
        name: Registered model name, e.g. ``cxr-findings``.
        version: MLflow version number, as a string (``"1"``, ``"2"``...).
        run_id: MLflow run that produced the version, if known.
        sha256: sha256 of the single-file ONNX model, from the version's ``sha256`` tag.
        aliases: Aliases currently pointing at this version.
        created_at: When the version was registered (UTC), if known.
        dataset: The ``dataset`` tag: which data the model was trained and validated on.
        git_commit: The ``git_commit`` tag.
        parity_passed: Whether ONNX Runtime matched PyTorch at export (``parity_passed`` tag).
        metrics: Gate figures copied onto the version as tags (``val_auroc*``).
        tags: Every tag of the version.
        dataset_digest: The ``dataset_sha256`` tag: the digest of the data set's content, when the data
            set has one (a ``dxassist-export``); two versions with the same digest saw the same data.
    """

    name: str
    version: str
    run_id: str | None
    sha256: str | None
    aliases: tuple[str, ...] = ()
    created_at: datetime | None = None
    dataset: str | None = None
    git_commit: str | None = None
    parity_passed: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    dataset_digest: str | None = None


@dataclass(frozen=True)
class ModelSummary:
    """A registered model with its versions (newest first) and alias map."""

    name: str
    versions: tuple[RegisteredVersion, ...]
    aliases: Mapping[str, str]
    description: str | None = None

    @property
    def champion(self) -> str | None:
        """Version currently aliased ``champion``, if any."""
        return self.aliases.get("champion")


@dataclass(frozen=True)
class FigureComparison:
    """One gate figure compared between candidate and champion."""

    figure: str
    candidate: float | None
    champion: float
    passed: bool


@dataclass(frozen=True)
class ShadowEvidence:
    """What a candidate showed on live traffic beside the champion (counted from the patient record).

    Attributes:
        shadow_studies: Inputs the champion answered and the candidate shadow-scored.
        reader_verdicts: Readers' verdicts on those inputs.
    """

    shadow_studies: int
    reader_verdicts: int


@dataclass(frozen=True)
class EvidenceCheck:
    """One live-traffic requirement of the gate: the count found and the count required."""

    figure: str
    value: int
    required: int
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate for one candidate version.

    Attributes:
        name: Registered model name.
        version: Candidate version.
        previous_champion: Champion before the decision (``None`` for a first promotion).
        passed: Whether ``champion`` may move (or was moved) to the candidate.
        reason: Full sentence explaining the decision.
        comparisons: Every figure the gate compared.
        tolerance: Largest drop allowed on any figure.
        evidence: The live-traffic requirements checked (shadow-scored inputs, readers' verdicts).
    """

    name: str
    version: str
    previous_champion: str | None
    passed: bool
    reason: str
    comparisons: tuple[FigureComparison, ...] = ()
    tolerance: float = 0.01
    evidence: tuple[EvidenceCheck, ...] = ()


@dataclass(frozen=True)
class LocalModel:
    """A model file in the local cache, its sha256 verified.

    Attributes:
        name: Registered model name.
        version: Version number as a string.
        sha256: Verified sha256 of ``path``.
        path: The single-file ONNX model.
        aliases: Aliases the version had when it was cached.
        run_id: MLflow run that produced it (``None`` for seeded caches).
        offline: True when the registry could not be asked and the last known alias mapping was used.
    """

    name: str
    version: str
    sha256: str
    path: Path
    aliases: tuple[str, ...]
    run_id: str | None
    offline: bool = False
