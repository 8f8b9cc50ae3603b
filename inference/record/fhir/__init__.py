"""FHIR R4 views of the patient record: read, search (searchset Bundles) and the CapabilityStatement."""

from inference.record.fhir._codes import AI_ASSERTED
from inference.record.fhir._search import SEARCH_PARAMS, SUPPORTED_TYPES, capability_statement, read, search

__all__ = ["AI_ASSERTED", "SEARCH_PARAMS", "SUPPORTED_TYPES", "capability_statement", "read", "search"]
