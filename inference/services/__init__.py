"""Services: keyword-only functions that orchestrate the packages for one request. No FastAPI here.

Routes in :mod:`inference.api` call exactly one of these; the DICOM listener and the CLI may call them
too. Each takes a :class:`Context` (engines built once per process) and, when patient data is touched,
an :class:`Actor` (who asks, from where) so facility scoping and the audit trail happen in one place.
"""

from inference.services._access import (
    audit,
    audit_denial,
    authorise,
    authorise_patient,
)
from inference.services._audit_trail import (
    AuditedModelHost,
    audit_event_read,
    audit_event_search,
    record_model_change,
)
from inference.services._auth_audit import audit_refused_authentication
from inference.services._break_glass import list_break_glass, open_break_glass
from inference.services._consent import (
    get_consent,
    set_consent,
    set_consent_by_identifier,
)
from inference.services._context import Actor, Context, Workers
from inference.services._dead_letters import (
    DeadLetter,
    DeadLetterError,
    discard_dead_letters,
    list_dead_letters,
    retry_dead_letters,
)
from inference.services._drift import drift_report, observe_drift
from inference.services._engines import open_context, registry_fetch
from inference.services._errors import PictureUnreadable, ServiceError
from inference.services._fhir import (
    capability,
    fhir_history,
    fhir_read,
    fhir_search,
    fhir_vread,
    patient_everything,
)
from inference.services._images import get_heat_layer, get_heatmap, get_result_image
from inference.services._imaging import Outcome, analyse_decoded, analyse_study, instance_in, join_analysed
from inference.services._results import (
    FeedbackReceipt,
    ResultView,
    get_result,
    get_study_result,
    get_worklist,
    submit_feedback,
)
from inference.services._revocations import RevocationList, token_revoked
from inference.services._status import is_ready, list_models, model_problems, readiness
from inference.services._stow import (
    FailedInstance,
    OversizedPart,
    StoredInstance,
    StowOutcome,
    store_instances,
)
from inference.services._triage import analyse_vitals
from inference.services._warnings import SYNTHETIC as SYNTHETIC_WARNING
from inference.services._web import (
    AccountLocked,
    OtherVerdict,
    SignInRefused,
    SsoRefused,
    SsoStart,
    SsoUnavailable,
    ViewedResult,
    WebSession,
    add_user,
    disable_user,
    finish_sso,
    list_users,
    mark_read,
    reading_worklist,
    record_verdicts,
    resume_session,
    sign_in,
    sign_out,
    start_sso,
    unbind_user,
    viewed_result,
)

__all__ = [
    "PictureUnreadable",
    "AccountLocked",
    "SignInRefused",
    "SsoRefused",
    "SsoStart",
    "SsoUnavailable",
    "OtherVerdict",
    "ViewedResult",
    "WebSession",
    "add_user",
    "disable_user",
    "finish_sso",
    "list_users",
    "mark_read",
    "patient_everything",
    "reading_worklist",
    "record_verdicts",
    "resume_session",
    "sign_in",
    "sign_out",
    "start_sso",
    "unbind_user",
    "viewed_result",
    "SYNTHETIC_WARNING",
    "Actor",
    "AuditedModelHost",
    "Context",
    "DeadLetter",
    "DeadLetterError",
    "FailedInstance",
    "FeedbackReceipt",
    "Outcome",
    "ResultView",
    "OversizedPart",
    "ServiceError",
    "StoredInstance",
    "StowOutcome",
    "Workers",
    "analyse_decoded",
    "analyse_study",
    "analyse_vitals",
    "instance_in",
    "join_analysed",
    "audit",
    "audit_event_read",
    "audit_event_search",
    "audit_denial",
    "audit_refused_authentication",
    "token_revoked",
    "RevocationList",
    "authorise",
    "list_break_glass",
    "open_break_glass",
    "authorise_patient",
    "capability",
    "discard_dead_letters",
    "drift_report",
    "fhir_history",
    "fhir_read",
    "fhir_search",
    "fhir_vread",
    "get_consent",
    "get_heat_layer",
    "get_heatmap",
    "get_result",
    "get_result_image",
    "get_study_result",
    "get_worklist",
    "list_dead_letters",
    "list_models",
    "model_problems",
    "is_ready",
    "observe_drift",
    "open_context",
    "readiness",
    "record_model_change",
    "registry_fetch",
    "retry_dead_letters",
    "set_consent",
    "set_consent_by_identifier",
    "store_instances",
    "submit_feedback",
]
