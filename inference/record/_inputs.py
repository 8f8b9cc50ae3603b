"""What the services hand to the record: frozen dataclasses, validated by the code that builds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.record._result_types import AnyResult


@dataclass(frozen=True)
class PatientIn:
    """A patient as the sender identifies them.

    ``identifier`` is unique within ``issuer`` (the assigning authority); the record keeps one patient
    per (identifier, issuer, normalised: trimmed, upper case), fills in demographics it does not have yet
    and never overwrites those it has (a difference is recorded as an identity mismatch). ``facility`` is
    the facility sending the data: it owns the result filed with it. ``home_facility``, when set, is the
    facility a patient not on file yet is filed under (its first facility) instead of the sender: the
    facility whose own assigning authority issued the identifier.
    """

    identifier: str
    issuer: str | None = None
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    facility: str | None = None
    home_facility: str | None = None


@dataclass(frozen=True)
class ModelRef:
    """The exact model that produced a result: registered name, version, ONNX sha256, execution provider,
    and whether it was trained on synthetic data only (its ``dxassist.synthetic`` metadata; every output
    of the result then says so, whatever its warnings read).

    ``training`` and ``training_data`` are what the model was trained on, as its file says (the sentence
    every result of it carries, and the data-set line of its metadata): kept on the model's Device when
    it is first filed, so that the Device still says it once the version is no longer served.
    """

    name: str
    version: str
    sha256: str
    provider: str
    synthetic: bool
    training: str | None = None
    training_data: str | None = None


@dataclass(frozen=True)
class FindingIn:
    """One finding of an imaging model; ``box`` is (x0, y0, x1, y1) in image pixels, ``heatmap_png`` a PNG."""

    code: str
    display: str
    probability: float
    positive: bool
    threshold: float
    box: tuple[int, int, int, int] | None = None
    heatmap_png: bytes | None = None
    heatmap: bool = False
    """Whether a heatmap can be drawn for it from the result's :class:`RenderingData` (its CAM is kept)."""


@dataclass(frozen=True)
class RenderingData:
    """What drawing the heatmaps of a result needs (``inference.analysis.StoredRendering``, stored).

    Attributes:
        display: The display rendering (8-bit grayscale JPEG).
        cams: ``npz`` of the positive findings' class activation maps at model resolution.
        geometry: ``{"original_shape": [rows, columns], "input_size": S}``.
        model: ``(name, version)`` of the model that made the result (filled when read back).
    """

    display: bytes
    cams: bytes
    geometry: dict[str, Any]
    model: tuple[str, str] | None = None


@dataclass(frozen=True)
class InstanceIn:
    """One analysed DICOM instance."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    modality: str
    view_position: str | None
    pixel_digest: str | None = None
    """sha256 (hex) of the Pixel Data element as received: a resend must carry the same pixels."""


@dataclass(frozen=True)
class AuditIn:
    """Who files a result, for the audit entry committed in the same transaction as the result."""

    subject: str
    role: str
    facility: str | None
    action: str
    client: str | None = None


@dataclass(frozen=True)
class OutputsIn:
    """The DICOM outputs a new imaging result owes its PACS destinations, filed with it in one transaction.

    ``spool`` is the folder, relative to ``DXASSIST_HOME``, holding the source header the build needs
    (older filings), ``source`` that header itself, kept in the record so any replica can build. The
    outbox worker builds the outputs (off the request path) once the result is committed.
    """

    destinations: tuple[str, ...]
    spool: str | None
    source: bytes | None = None


@dataclass(frozen=True)
class TrainingInputIn:
    """The de-identified model input of a new imaging result (float16 ``npz``, see ``_training_inputs``),
    kept with the result, in its filing transaction, when the patient's consent allows AI processing."""

    model_name: str
    model_version: str
    input_size: int
    pixels: bytes


@dataclass(frozen=True)
class ImagingResultIn:
    """Everything one imaging result needs to be filed in one transaction.

    ``study_date`` is the DICOM ``StudyDate`` (``YYYYMMDD``) or an ISO date; ``source`` names the channel
    the study came through (``upload``, ``stow``, ``dimse``). ``assessable`` is False when the model's
    OOD score (``ood_score``, above ``ood_threshold``) says the image is outside what it knows.
    ``outputs``, when destinations are configured, becomes a pending output build committed with the
    result, so that no result is filed without a durable record of what it owes the PACS.
    """

    patient: PatientIn
    study_instance_uid: str
    accession_number: str | None
    study_date: str | None
    instances: tuple[InstanceIn, ...]
    primary_sop_instance_uid: str
    model: ModelRef
    findings: tuple[FindingIn, ...]
    priority: str
    warnings: tuple[str, ...]
    rationale: dict[str, str]
    source: str
    rendering: RenderingData | None = None
    assessable: bool = True
    ood_score: float | None = None
    ood_threshold: float | None = None
    outputs: OutputsIn | None = None
    keep_study_priority: bool = False
    training_input: TrainingInputIn | None = None
    """File the higher of ``priority`` and the priority the study already has (a new analysis never lowers
    the urgency of a study on the worklist); decided in the filing transaction, so two concurrent
    analyses of one study cannot lower it either."""


@dataclass(frozen=True)
class TriageResultIn:
    """Everything one triage result needs to be filed in one transaction.

    ``vitals`` is keyed by the contract's field names (``respiratory_rate``, ``spo2``, ``spo2_scale``,
    ``on_oxygen``, ``systolic_bp``, ``diastolic_bp``, ``heart_rate``, ``temperature``,
    ``consciousness``). ``news2`` is ``{"total", "subscores", "band", "complete", "missing",
    "red_score"}``; ``missing`` names the model inputs not measured (their contributions are 0);
    ``trend`` is the patient's series summary or ``None`` for a first observation. A naive
    ``observed_at`` is taken as UTC.
    """

    patient: PatientIn
    observed_at: datetime
    vitals: dict[str, float | bool | str | None]
    model: ModelRef
    probability: float
    positive: bool
    threshold: float
    logit: float
    intercept: float
    contributions: dict[str, float]
    news2: dict[str, Any] | None
    priority: str
    warnings: tuple[str, ...]
    rationale: dict[str, str]
    missing: tuple[str, ...] = ()
    trend: dict[str, Any] | None = None
    request: TriageRequestKeys | None = None


@dataclass(frozen=True)
class TriageRequestKeys:
    """What makes a vitals request idempotent (sha256 hex digests, see ``inference.record.request_keys``).

    Attributes:
        idempotency_key: Sender + ``Idempotency-Key`` header, or ``None`` when no key was sent.
        request_digest: The request's content (patient, observation time as sent, values).
        observation_key: The reading: the sender's facility + patient + observation time + values;
            ``None`` for a request without an observation time. Stored with the result (UNIQUE).
        earlier_keys: Other keys the same reading may have been filed under: the sender's own key of
            versions that keyed readings by token.
    """

    idempotency_key: str | None
    request_digest: str
    observation_key: str | None
    earlier_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """A reader's verdict on one finding: ``agree``, ``disagree`` or ``correct`` (with the right label)."""

    code: str
    verdict: str
    correct_label: bool | None = None


@dataclass(frozen=True)
class StoredResult:
    """What saving a result returns; ``created`` is False when the same analysis was already filed."""

    result_id: str
    patient_id: str
    created: bool
    mismatched: tuple[str, ...] = ()
    """Demographic fields the sender gave differently from the record on file (kept as on file)."""
    result: AnyResult | None = None
    """The filed result, read back in the filing transaction (an imaging one with its deliveries)."""
