"""Terminology used by the FHIR views: code systems, LOINC vital signs, SNOMED CT findings.

Codes no standard system covers well (being on supplemental oxygen as a yes/no, the NEWS2 SpO2 scale,
the model's probability component, the deterioration outcome) live in the local code system
``urn:dxassist:codes``, so nobody mistakes them for standard codes.
"""

from __future__ import annotations

from typing import Any, Final

SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
RFC3986: Final = "urn:ietf:rfc:3986"
LOCAL: Final = "urn:dxassist:codes"
ISSUER_PREFIX: Final = "urn:dxassist:issuer:"
FACILITY_SYSTEM: Final = "urn:dxassist:facility"
MODEL_SHA256_SYSTEM: Final = "urn:dxassist:model-sha256"
OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PROVENANCE_AGENT: Final = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
RISK_PROBABILITY: Final = "http://terminology.hl7.org/CodeSystem/risk-probability"

AI_ASSERTED: Final[dict[str, str]] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
"""``meta.security`` label on every resource a model produced."""

DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
NOT_ASSESSABLE: Final = {
    "system": LOCAL,
    "code": "not-assessable",
    "display": "Not assessable by the AI model (image outside its training distribution)",
}
"""Conclusion of a report whose image the model refused; no standard code says this."""

PRESENT: Final = {"system": SNOMED, "code": "52101004", "display": "Present"}
ABSENT: Final = {"system": SNOMED, "code": "2667000", "display": "Absent"}

ACVPU: Final[dict[str, tuple[str, str]]] = {
    # SNOMED CT answers of the UK ACVPU value set.
    "A": ("248234008", "Mentally alert"),
    "C": ("130987000", "Acute confusion"),
    "V": ("300202002", "Responds to voice"),
    "P": ("450847001", "Responds to pain"),
    "U": ("422768004", "Unresponsive"),
}

NEWS2_BAND_RISK: Final[dict[str, tuple[str, str]]] = {
    "low": ("low", "Low likelihood"),
    "low-medium": ("moderate", "Moderate likelihood"),
    "medium": ("moderate", "Moderate likelihood"),
    "high": ("high", "High likelihood"),
}


def finding_coding(code: str, display: str) -> dict[str, Any]:
    """The Coding of a finding: SNOMED CT from ``inference.explain`` when known, else the local system.

    One table of finding concepts serves FHIR and DICOM SR alike, so they never disagree.
    """
    from inference.explain._codes import FINDING_CODES

    known = FINDING_CODES.get(code)
    if known is None:
        return {"system": LOCAL, "code": code, "display": display}
    system, value, name = known
    return {"system": system, "code": value, "display": name}


def quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    """A UCUM Quantity."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with one Coding."""
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        out["text"] = text
    return out
