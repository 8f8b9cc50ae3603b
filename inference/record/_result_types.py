"""What the record returns: frozen, typed results (the public JSON is made from them at the API edge).

Nothing here carries a patient's name or birth date: a result names its patient by record id and
identifier only; a worklist line adds the age and sex a reader triages with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Box = tuple[int, int, int, int]
Priority = Literal["critical", "urgent", "routine"]


@dataclass(frozen=True, slots=True)
class PatientRef:
    """The patient of a result: the FHIR Patient id and the identifier the sender uses."""

    id: str
    identifier: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The exact model that produced a result.

    Attributes:
        synthetic: It was trained on synthetic data only (its ``dxassist.synthetic`` metadata, kept with
            the result): outputs and pages mark the result from this flag, never from the wording of a
            warning. Feedback entries leave it False.
    """

    name: str
    version: str
    sha256: str | None = None
    synthetic: bool = False


@dataclass(frozen=True, slots=True)
class FindingResult:
    """One finding of an imaging result; ``box`` is (x0, y0, x1, y1) in image pixels."""

    code: str
    display: str
    probability: float
    positive: bool
    threshold: float
    box: Box | None
    heatmap: bool
    """Whether a heatmap overlay can be drawn (or was stored) for it."""


@dataclass(frozen=True, slots=True)
class OodScore:
    """The model's out-of-distribution score (None when not finite) and the threshold it was refused above."""

    score: float | None
    threshold: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One DICOM output of an imaging result for one destination (kind ``outputs``: not built yet)."""

    destination: str
    kind: Literal["sr", "sc", "outputs"]
    object: str | None
    state: Literal["pending", "sent", "dead", "withheld", "discarded"]
    attempts: int
    sent_at: datetime | None
    last_error: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class PendingBuild:
    """The DICOM outputs of a result that are not built yet (pending or dead), per destination."""

    destinations: tuple[str, ...]
    state: Literal["pending", "dead"]
    attempts: int
    error_code: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FiledResult:
    """The fields every kind of filed result has (:class:`ImagingResult`, :class:`TriageResult`).

    Attributes:
        rationale: The explanation per language code.
    """

    result_id: str
    patient: PatientRef
    model: ModelInfo
    priority: Priority
    status: str
    warnings: tuple[str, ...]
    created_at: datetime
    rationale: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ImagingResult(FiledResult):
    """A filed chest radiograph analysis.

    Attributes:
        deliveries: Its DICOM objects per destination in queue order (read with the result when asked).
        build: Its outputs still owed (``None``: built, or no destination).
    """

    study_instance_uid: str
    findings: tuple[FindingResult, ...]
    assessable: bool
    ood: OodScore | None
    deliveries: tuple[Delivery, ...] = ()
    build: PendingBuild | None = None

    @property
    def kind(self) -> Literal["imaging"]:
        """``imaging``."""
        return "imaging"


@dataclass(frozen=True, slots=True)
class Risk:
    """The calibrated probability of deterioration and the operating decision."""

    probability: float
    positive: bool
    threshold: float | None


@dataclass(frozen=True, slots=True)
class TriageResult(FiledResult):
    """A filed vital-signs triage (``news2`` and ``trend`` keep the contract's keys)."""

    observed_at: datetime
    risk: Risk
    contributions: Mapping[str, float]
    intercept: float
    logit: float
    news2: Mapping[str, object] | None
    missing: tuple[str, ...]
    trend: Mapping[str, object] | None
    vitals: Mapping[str, float | bool | str]

    @property
    def kind(self) -> Literal["triage"]:
        """``triage``."""
        return "triage"


AnyResult = ImagingResult | TriageResult


@dataclass(frozen=True, slots=True)
class WorklistPatient:
    """Of the patient a worklist line shows the identifier, age and sex (never the name or birth date)."""

    id: str
    identifier: str
    age: int | None
    sex: str | None


@dataclass(frozen=True, slots=True)
class WorklistItem:
    """One open result on the worklist."""

    result_id: str
    kind: Literal["imaging", "triage"]
    priority: Priority
    status: str
    created_at: datetime
    escalated: bool
    patient: WorklistPatient
    model: ModelInfo
    warnings: tuple[str, ...]
    positive_findings: tuple[str, ...]
    study_instance_uid: str | None = None
    study_date: str | None = None
    modality: str | None = None
    assessable: bool | None = None
    observed_at: datetime | None = None
    news2: Mapping[str, object] | None = None
    trend: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True)
class FeedbackVerdict:
    """One stored verdict."""

    code: str
    verdict: str
    correct_label: bool | None


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """A reader's feedback on a result, with the exact model it judged."""

    feedback_id: str
    result_id: str
    reader: str
    verdicts: tuple[FeedbackVerdict, ...]
    model: ModelInfo
    created: datetime
