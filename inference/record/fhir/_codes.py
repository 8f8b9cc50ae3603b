"""FHIR-only terminology (HL7 code systems, identifier systems) and the FHIR datatypes of a concept.

Finding concepts, vital-sign codes, Present/Absent and the clinical code systems are the product's one
vocabulary, :mod:`inference.vocabulary`, shared with the DICOM SR. Codes no standard system covers well
(the NEWS2 SpO2 scale, the model's probability component, the deterioration outcome) live in the local
code system ``urn:dxassist:codes`` (:data:`inference.vocabulary.LOCAL`), so nobody mistakes them for
standard codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from inference.vocabulary import LOCAL, UCUM, Concept, finding_concept

RFC3986: Final = "urn:ietf:rfc:3986"
DICOM_UID: Final = "urn:dicom:uid"
"""Identifier.system of DICOM UIDs (value ``urn:oid:<uid>``), as FHIR R4 ImagingStudy gives the study's."""
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
MEDIA_TYPE: Final = "http://terminology.hl7.org/CodeSystem/media-type"

AI_ASSERTED: Final[dict[str, str]] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
"""``meta.security`` label on every resource a model produced."""

TRAINING_DATA: Final[dict[str, str]] = {
    "system": LOCAL,
    "code": "training-data",
    "display": "Data set the model was trained on",
}
"""Device.property.type of the data set a model was trained on (a local code: no standard one exists)."""

DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
NEWS2_BAND_RISK: Final[dict[str, tuple[str, str]]] = {
    "low": ("low", "Low likelihood"),
    "low-medium": ("moderate", "Moderate likelihood"),
    "medium": ("moderate", "Moderate likelihood"),
    "high": ("high", "High likelihood"),
}


def finding_coding(code: str, display: str) -> dict[str, str]:
    """The Coding of a finding: its SNOMED CT concept when known, else the local system.

    One table of finding concepts serves FHIR and DICOM SR alike, so they never disagree.
    """
    return finding_concept(code, display).coding()


def codings(concepts: Sequence[Concept]) -> list[dict[str, str]]:
    """The Codings of vocabulary concepts, in order (the first is the primary one)."""
    return [concept.coding() for concept in concepts]


def quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    """A UCUM Quantity."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with one Coding."""
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        out["text"] = text
    return out
