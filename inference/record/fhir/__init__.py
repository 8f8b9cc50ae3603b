"""FHIR R4 views of the patient record: read, search (searchset Bundles), Patient
``$everything``, the CapabilityStatement, and
the audit trail as AuditEvent resources."""

from inference.record.fhir import _audit_event as audit_events
from inference.record.fhir._capability import capability_statement
from inference.record.fhir._codes import AI_ASSERTED, MODEL_SHA256_SYSTEM, TRAINING_DATA
from inference.record.fhir._everything import TYPES as EVERYTHING_TYPES
from inference.record.fhir._everything import everything
from inference.record.fhir._resources import history, version_of
from inference.record.fhir._search import (
    SEARCH_PARAMS,
    SUPPORTED_TYPES,
    read,
    search,
    subject_as_patient,
)

__all__ = [
    "AI_ASSERTED",
    "EVERYTHING_TYPES",
    "MODEL_SHA256_SYSTEM",
    "SEARCH_PARAMS",
    "SUPPORTED_TYPES",
    "TRAINING_DATA",
    "audit_events",
    "capability_statement",
    "everything",
    "history",
    "read",
    "search",
    "subject_as_patient",
    "version_of",
]
