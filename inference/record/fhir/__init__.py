"""FHIR R4 views of the patient record: read, search (searchset Bundles), the CapabilityStatement, and
the audit trail as AuditEvent resources."""

from inference.record.fhir import _audit_event as audit_events
from inference.record.fhir._codes import AI_ASSERTED, MODEL_SHA256_SYSTEM
from inference.record.fhir._search import SEARCH_PARAMS, SUPPORTED_TYPES, capability_statement, read, search

__all__ = [
    "AI_ASSERTED",
    "MODEL_SHA256_SYSTEM",
    "SEARCH_PARAMS",
    "SUPPORTED_TYPES",
    "audit_events",
    "capability_statement",
    "read",
    "search",
]
