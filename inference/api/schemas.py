"""Request and public (response) schemas of the HTTP API.

Requests forbid unknown fields (a misspelt ``heartrate`` must not silently drop a vital sign) and use
strict types (``"22"`` or ``true`` is not a respiratory rate). Public schemas list exactly what leaves the
server: a service may hand back more (stored fields), and ``response_model`` drops it.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from inference.api._dates import check_birth_date, check_born_before, check_observed_at
from inference.security import NOT_IN_LINE, NOT_IN_TEXT

Priority = Literal["critical", "urgent", "routine"]
StrictNumber = Annotated[float, Field(strict=True)]


# Refused where a request gives text (422 ``invalid_characters``, naming the field): the characters of
# inference.security.NOT_IN_TEXT, tab and line breaks too in a one-line value (NOT_IN_LINE).
def _refuse_characters(value: str | None, forbidden: re.Pattern[str]) -> str | None:
    if value is not None and forbidden.search(value):
        # The value is never echoed (it may be a patient's name); the error handler names the field.
        raise PydanticCustomError("invalid_characters", "holds a control or invisible formatting character")
    return value


def _one_line(value: str | None) -> str | None:
    return _refuse_characters(value, NOT_IN_LINE)


def _free_text(value: str | None) -> str | None:
    return _refuse_characters(value, NOT_IN_TEXT)


Line = AfterValidator(_one_line)
"""An identifier, code or name: printable text on one line (see :data:`inference.security.NOT_IN_LINE`)."""
Text = AfterValidator(_free_text)
"""Free text (a reason): printable, tab and line breaks accepted."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Public(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- errors -----------------------------------------------------------------------------------------


class ErrorBody(_Public):
    """What went wrong: a stable machine code and a sentence for people."""

    code: str = Field(examples=["unsupported_transfer_syntax"])
    message: str


class ErrorResponse(_Public):
    """Every error answer outside ``/fhir``."""

    error: ErrorBody


# -- requests ---------------------------------------------------------------------------------------


class PatientRequest(_Request):
    """Who the vital signs belong to. Only ``identifier`` is required."""

    identifier: Annotated[str, Field(strict=True, min_length=1, max_length=64, pattern=r"^\S(.*\S)?$"), Line]
    issuer: Annotated[str | None, Field(strict=True, max_length=128), Line] = None
    name: Annotated[str | None, Field(strict=True, max_length=256), Line] = None
    birth_date: Annotated[date | None, AfterValidator(check_birth_date)] = None
    sex: Literal["male", "female", "other", "unknown"] | None = None
    facility: Annotated[str | None, Field(strict=True, min_length=1, max_length=128), Line] = None


class VitalsRequest(_Request):
    """One set of vital signs in fixed units (breaths/min, %, mmHg, beats/min, °C, ACVPU)."""

    patient: PatientRequest
    observed_at: Annotated[AwareDatetime | None, AfterValidator(check_observed_at)] = Field(
        default=None, description="When measured, with its time zone (default: now); 1900 to now."
    )
    respiratory_rate: StrictNumber | None = None
    spo2: StrictNumber | None = None
    spo2_scale: Literal[1, 2] = 1
    on_oxygen: StrictBool | None = None
    systolic_bp: StrictNumber | None = None
    diastolic_bp: StrictNumber | None = None
    heart_rate: StrictNumber | None = None
    temperature: StrictNumber | None = None
    consciousness: Literal["A", "C", "V", "P", "U"] | None = None

    @model_validator(mode="after")
    def _observed_after_birth(self) -> VitalsRequest:
        check_born_before(self.observed_at, self.patient.birth_date)
        return self

    def vitals(self) -> dict[str, Any]:
        """The vital-sign fields only, keyed as in the request."""
        return self.model_dump(exclude={"patient", "observed_at"})


class VerdictRequest(_Request):
    """A reader's verdict on one finding (``deterioration`` for a triage result)."""

    code: Annotated[str, Field(strict=True, min_length=1, max_length=64), Line]
    verdict: Literal["agree", "disagree", "correct"]
    correct_label: StrictBool | None = None

    @model_validator(mode="after")
    def _label_with_correct(self) -> VerdictRequest:
        if self.verdict == "correct" and self.correct_label is None:
            raise ValueError("a 'correct' verdict needs 'correct_label' (true or false)")
        if self.verdict != "correct" and self.correct_label is not None:
            raise ValueError("'correct_label' is only accepted with the verdict 'correct'")
        return self


class FeedbackRequest(_Request):
    """Verdicts on some or all findings of one result."""

    verdicts: Annotated[list[VerdictRequest], Field(min_length=1, max_length=64)]


Choice = Literal["permit", "deny"]


class ConsentRequest(_Request):
    """A patient's choices: ``deny`` records an objection, ``permit`` withdraws it."""

    ai_processing: Choice = Field(description="AI analysis of the patient's studies and vital signs.")
    national_sharing: Choice = Field(
        description="Sending results to external destinations (national record)."
    )
    facility_sharing: Choice | None = Field(
        default=None,
        description="Reading of the patient's results by other facilities (opt-in: deny until a permit is "
        "recorded); left out: unchanged.",
    )


class PatientKey(_Request):
    """Who a consent is about, as the hospital identifies them."""

    identifier: Annotated[str, Field(strict=True, min_length=1, max_length=64, pattern=r"^\S(.*\S)?$"), Line]
    issuer: Annotated[str | None, Field(strict=True, max_length=128), Line] = None
    facility: Annotated[str | None, Field(strict=True, min_length=1, max_length=128), Line] = None


class ConsentByIdentifierRequest(ConsentRequest):
    """A patient's choices, for a patient named by identifier (filed now if not yet known)."""

    patient: PatientKey


# -- public results ---------------------------------------------------------------------------------


class PatientRef(_Public):
    """The patient a result belongs to: FHIR Patient id and the sender's identifier."""

    id: str
    identifier: str


class ModelRef(_Public):
    """The model that produced a result."""

    name: str
    version: str
    sha256: str | None = None
    synthetic: bool = Field(
        description="Trained on synthetic data only: the result has not been validated on real patients and "
        "must not be used for diagnosis (its warnings say so too)."
    )


class Finding(_Public):
    """One imaging finding. ``heatmap`` is the overlay's path, or null when none was made."""

    code: str
    display: str
    probability: float
    positive: bool
    threshold: float | None = None
    box: list[int] | None = Field(default=None, description="[x0, y0, x1, y1] in image pixels.")
    heatmap: str | None = None


class DriftReportOut(_Public):
    """Population stability index per signal over the last results of the served imaging model version."""

    model: str
    version: str
    reference: bool = Field(description="False when the model carries no validation reference.")
    reference_n: int | None = None
    observations: int
    window: int | None = None
    alert_level: float | None = None
    min_observations: int | None = None
    alert: bool
    psi: dict[str, float | None] = Field(description="'ood' and 'p_<finding>' -> PSI (null: no data).")
    drifting: list[str] = []


class OodScore(_Public):
    """The model's out-of-distribution score of the image and the threshold above which it is refused."""

    score: float | None = Field(description="Higher is less like the training images; null if not finite.")
    threshold: float


class Risk(_Public):
    """Calibrated probability of deterioration and the operating decision."""

    probability: float
    positive: bool
    threshold: float | None = None


class News2(_Public):
    """NEWS2 (RCP 2017) of the measured signs: a lower bound of the full score when incomplete."""

    total: int = Field(
        description="Sum of the subscores of the measured signs (a lower bound if incomplete)."
    )
    subscores: dict[str, int] = Field(description="Points per measured sign, keyed by request field name.")
    band: Literal["low", "low-medium", "medium", "high"] = Field(description="Band of the measured part.")
    complete: bool = Field(default=True, description="Every NEWS2 sign was measured.")
    missing: list[str] = Field(default_factory=list, description="NEWS2 signs not measured.")
    red_score: bool = Field(default=False, description="Some measured sign scores 3.")


class News2Summary(_Public):
    """The NEWS2 figures a worklist line shows."""

    total: int
    band: Literal["low", "low-medium", "medium", "high"]
    complete: bool | None = None


class Trend(_Public):
    """The patient's series of triage observations in the trend window, ending with this one."""

    observations: int = Field(description="Observations in the window, this one included.")
    hours: float = Field(description="Hours from the earliest observation in the window to this one.")
    news2_change: int = Field(description="NEWS2 total now minus the earliest in the window.")
    risk_change: float = Field(description="Model probability now minus the earliest in the window.")
    deteriorating: bool = Field(description="By the rule in docs/api.md (trend).")


class Delivery(_Public):
    """One DICOM output of an imaging result (SR or heatmap capture) queued for one destination.

    While a result's outputs could not be built, each destination has one entry of kind ``outputs``
    (no ``object`` yet) in state ``pending`` (being retried) or ``dead``.
    """

    destination: str = Field(description="The destination's name in DXASSIST_DESTINATIONS.")
    kind: Literal["sr", "sc", "outputs"] = Field(
        description="sr: the TID 1500 report; sc: a heatmap capture; outputs: the outputs not built yet."
    )
    object: str | None = Field(default=None, description="SOP Instance UID of the delivered object.")
    state: Literal["pending", "sent", "dead", "withheld", "discarded"] = Field(
        description="dead: refused for good or out of attempts (dead letter; an operator can retry it). "
        "withheld: not sent because the patient objected to sharing after it was queued (error "
        "consent_withdrawn; never retried). discarded: a dead letter an operator gave up on (never "
        "retried)."
    )
    attempts: int
    sent_at: str | None = None
    last_error: str | None = Field(default=None, description="Transport and status text of the last failure.")
    error: str | None = Field(
        default=None,
        description="Code of the last failure: destination_unreachable, destination_busy, "
        "destination_unauthorized, destination_refused, output_build_failed, ...",
    )


class _ResultBase(_Public):
    result_id: str
    patient: PatientRef
    model: ModelRef
    priority: Priority
    status: str | None = None
    warnings: list[str]
    created_at: str | None = None
    rationale: str | None = Field(default=None, description="Explanation in the Accept-Language language.")
    rationale_language: str | None = None


class ImagingResult(_ResultBase):
    """A chest radiograph analysis."""

    kind: Literal["imaging"]
    study_instance_uid: str
    findings: list[Finding]
    assessable: bool = Field(
        default=True,
        description="False when the image is outside the model's distribution: no finding is then positive, "
        "no heatmap is drawn and the AI raises no priority (the site policy decides).",
    )
    ood: OodScore | None = Field(default=None, description="For auditors: the OOD score and its threshold.")
    deliveries: list[Delivery] = Field(
        default_factory=list,
        description="Its DICOM outputs per destination, in queue order; empty when none is configured.",
    )


class TriageResult(_ResultBase):
    """A vital-signs triage."""

    kind: Literal["triage"]
    observed_at: str | None = None
    risk: Risk
    contributions: dict[str, float] = Field(
        description="Per input field, in logit units; exactly 0 for a field not sent (see missing)."
    )
    missing: list[str] = Field(default_factory=list, description="Model inputs not measured.")
    intercept: float
    logit: float
    news2: News2 | None
    trend: Trend | None = Field(default=None, description="Null for the first observation in the window.")


Result = Annotated[ImagingResult | TriageResult, Field(discriminator="kind")]


class WorklistItem(_Public):
    """One open result on the worklist."""

    result_id: str
    kind: Literal["imaging", "triage"]
    priority: Priority
    status: str | None = None
    created_at: str | None = None
    patient: PatientRef
    model: ModelRef
    warnings: list[str] = []
    study_instance_uid: str | None = None
    observed_at: str | None = None
    positive_findings: list[str] = []
    news2: News2Summary | None = None
    trend: Trend | None = None
    assessable: bool | None = Field(default=None, description="Imaging only: see ImagingResult.assessable.")


class Worklist(_Public):
    """Open results, most urgent first, then oldest first."""

    items: list[WorklistItem]
    limit: int
    offset: int


class FeedbackAccepted(_Public):
    """Acknowledges stored verdicts."""

    result_id: str
    recorded: int


class OodNeighbour(_Public):
    """A known neighbour of the frontal training films that the imaging model's guard refuses."""

    kind: str = Field(
        description="'lateral': lateral films whose header says frontal; 'mirrored': frontal films "
        "flipped left-right."
    )
    weight: float | None = Field(
        description="Its weight in the OOD score, as the model's metadata records it; null when not recorded."
    )


class OodGuard(_Public):
    """The imaging model's out-of-distribution guard."""

    method: str = Field(description="The score's name (dxassist.ood).")
    threshold: float = Field(description="An image scoring above it is not assessable.")
    lateral_contrast: bool = Field(
        description="True when the score refuses lateral films whose header says frontal by design (its "
        "lateral contrast term); false for a model exported without it, which refuses such a film only "
        "when it happens to lie far from the frontal films: retrain to add it."
    )
    neighbours: list[OodNeighbour] = Field(
        default=[],
        description="The known neighbours the score refuses by design, in the order of the model's metadata "
        "(its dxassist.ood 'neighbours', or the single older 'contrast' as 'lateral'); a kind absent here "
        "is not refused by design.",
    )
    warnings: list[str] = Field(
        default=[],
        description="One sentence per known neighbour (lateral, mirrored) the score does not refuse by "
        "design; empty when it refuses them all.",
    )


class ServedModel(_Public):
    """A model in service."""

    name: str
    version: str
    alias: str
    sha256: str
    provider: str
    kind: Literal["imaging", "triage"]
    synthetic: bool = Field(description="Trained on synthetic data only (every result then says so).")
    training_data: str | None = Field(
        description="What the model was trained on: the one line of its ONNX metadata "
        "(dxassist.training_data, written at export); null when the file does not say."
    )
    ood_guard: OodGuard | None = Field(
        default=None, description="The imaging model's guard; null for triage."
    )


class Models(_Public):
    """The models in service."""

    models: list[ServedModel]


class Health(_Public):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = {}
    problems: list[str] = Field(
        default=[],
        description="Readiness: one sentence per model version the server refused (why, and what to run).",
    )


class ConsentView(_Public):
    """A patient's consent as recorded (``permit`` where no objection was recorded)."""

    patient_id: str
    ai_processing: Literal["permit", "deny"]
    national_sharing: Literal["permit", "deny"]
    facility_sharing: Literal["permit", "deny"] = "deny"
    updated_by: str | None = None
    updated_at: str | None = None


# -- break the glass --------------------------------------------------------------------------------


class BreakGlassRequest(_Request):
    """An emergency access to a patient's results of other facilities: who (the token), why, how long.

    Name the patient by ``patient_id`` (FHIR Patient id) or by ``patient`` (identifier and issuer).
    """

    patient_id: uuid.UUID | None = None
    patient: PatientKey | None = None
    reason: Annotated[str, Field(strict=True, min_length=10, max_length=500), Text] = Field(
        description="Why the patient's care requires the access (kept, shown to auditors)."
    )
    minutes: Annotated[int, Field(strict=True, ge=1, le=1440)] = 60

    @model_validator(mode="after")
    def _one_patient(self) -> BreakGlassRequest:
        if (self.patient_id is None) == (self.patient is None):
            raise ValueError("name the patient by exactly one of 'patient_id' or 'patient'")
        return self


class BreakGlassView(_Public):
    """A break-the-glass grant and how many reads it made possible."""

    grant_id: str
    patient_id: str
    subject: str
    role: str
    facility: str | None = None
    reason: str
    opened_at: str
    expires_at: str
    active: bool
    accesses: int


class BreakGlassList(_Public):
    """Break-the-glass grants, newest first (auditors)."""

    total: int
    items: list[BreakGlassView]
    limit: int
    offset: int
