"""The patient record: results filed one transaction each, FHIR R4 views, reader feedback, the
hash-chained audit trail, patient consent and the outbox of deliveries to PACS.

``Record(url)`` is the service, one attribute per concern (``record.results``, ``record.audit``, ...);
the frozen input dataclasses describe what the services hand it.
"""

from inference.record._accounts import Account, Accounts, SessionRow
from inference.record._anchor import AnchorError, HeadAnchor
from inference.record._audit import AuditProblem, AuditReport
from inference.record._audit_log import verify_sqlite_copy
from inference.record._consent import ConsentObjection, ConsentState
from inference.record._errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidData,
    InvalidFeedback,
    InvalidSearch,
    NotFound,
    RecordError,
    RecordUnavailable,
    ResendConflict,
)
from inference.record._feedback import VERDICTS
from inference.record._idempotency import request_keys
from inference.record._inputs import (
    AuditIn,
    FindingIn,
    ImagingResultIn,
    InstanceIn,
    ModelRef,
    OutputsIn,
    PatientIn,
    RenderingData,
    StoredResult,
    TrainingInputIn,
    TriageRequestKeys,
    TriageResultIn,
    Verdict,
)
from inference.record._priors import (
    PRIORS_SHOWN,
    PriorStudies,
    PriorStudy,
    RecentTriage,
    RecentTriageResults,
    ViewedPatient,
    ViewerRead,
)
from inference.record._reads import DENIED, FAILURE, Audited, Changed
from inference.record._result_types import (
    AnyResult,
    Delivery,
    FeedbackEntry,
    FeedbackVerdict,
    FindingResult,
    ImagingResult,
    ModelInfo,
    OodScore,
    PatientRef,
    PendingBuild,
    Risk,
    TriageResult,
    WorklistItem,
    WorklistPatient,
)
from inference.record._results import AnalysedStudy, PictureRows
from inference.record._revocations import RevocationRow, Revoked, TokenRevocations
from inference.record._scope import BASES, BREAK_GLASS, EVERYTHING, OWN, SHARED, Scope
from inference.record._series import TriageIntake
from inference.record._shadow import ShadowPair, ShadowResults, ShadowScores, ShadowVersions, reader_truth
from inference.record._store import Record
from inference.record._training_inputs import (
    LabelledInput,
    ReaderLabel,
    TrainingInputs,
    decode_input,
    encode_input,
)
from inference.record._types import iso
from inference.record._views import TRIAGE_FEEDBACK_CODE, heatmap_url

__all__ = [
    "DENIED",
    "FAILURE",
    "PictureRows",
    "PRIORS_SHOWN",
    "PriorStudies",
    "PriorStudy",
    "RecentTriage",
    "RecentTriageResults",
    "ViewedPatient",
    "ViewerRead",
    "AnalysedStudy",
    "Audited",
    "Changed",
    "AnyResult",
    "Delivery",
    "FeedbackEntry",
    "FeedbackVerdict",
    "FindingResult",
    "ImagingResult",
    "ModelInfo",
    "OodScore",
    "PatientRef",
    "PendingBuild",
    "Risk",
    "TriageIntake",
    "TriageResult",
    "WorklistItem",
    "WorklistPatient",
    "heatmap_url",
    "iso",
    "AnchorError",
    "HeadAnchor",
    "Account",
    "Accounts",
    "SessionRow",
    "BASES",
    "BREAK_GLASS",
    "EVERYTHING",
    "OWN",
    "SHARED",
    "Scope",
    "ShadowPair",
    "ShadowResults",
    "ShadowScores",
    "ShadowVersions",
    "reader_truth",
    "LabelledInput",
    "ReaderLabel",
    "TrainingInputs",
    "decode_input",
    "encode_input",
    "AuditIn",
    "ResendConflict",
    "AuditProblem",
    "AuditReport",
    "ConsentObjection",
    "ConsentState",
    "TRIAGE_FEEDBACK_CODE",
    "VERDICTS",
    "Conflict",
    "FindingIn",
    "IdempotencyKeyReused",
    "ImagingResultIn",
    "InstanceIn",
    "InvalidFeedback",
    "InvalidData",
    "InvalidSearch",
    "ModelRef",
    "OutputsIn",
    "NotFound",
    "PatientIn",
    "Record",
    "RecordError",
    "RevocationRow",
    "Revoked",
    "TokenRevocations",
    "RecordUnavailable",
    "RenderingData",
    "StoredResult",
    "TrainingInputIn",
    "TriageRequestKeys",
    "TriageResultIn",
    "Verdict",
    "request_keys",
    "verify_sqlite_copy",
]
