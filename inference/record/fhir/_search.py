"""FHIR read and search over the record: resource by id, searchset Bundles, the CapabilityStatement."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final
from urllib.parse import unquote, urlencode

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from inference.record._errors import InvalidSearch
from inference.record._models import Device, Finding, Patient, Result, Study, VitalsObservation
from inference.record._types import iso, new_id, utcnow
from inference.record.fhir import _audit_event
from inference.record.fhir import _codes as c
from inference.record.fhir import _resources as r

SEARCH_PARAMS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    # type -> parameter -> (FHIR search param type, what it matches)
    "Patient": {
        "_id": ("token", "Logical id of the Patient"),
        "identifier": ("token", "A patient identifier, as value or system|value"),
    },
    "ImagingStudy": {
        "_id": ("token", "Logical id"),
        "patient": ("reference", "The Patient the study is about"),
    },
    "DiagnosticReport": {
        "_id": ("token", "Logical id"),
        "patient": ("reference", "The Patient the report is about"),
    },
    "Observation": {
        "_id": ("token", "Logical id"),
        "patient": ("reference", "The Patient the observation is about"),
        "category": ("token", "imaging or vital-signs"),
    },
    "RiskAssessment": {
        "_id": ("token", "Logical id"),
        "patient": ("reference", "The Patient the assessment is about"),
    },
    "Provenance": {
        "_id": ("token", "Logical id"),
        "patient": ("reference", "The Patient of the resources the provenance is about"),
    },
    "Device": {"_id": ("token", "Logical id")},
}
SUPPORTED_TYPES: Final[tuple[str, ...]] = tuple(SEARCH_PARAMS)
_COMMON: Final[frozenset[str]] = frozenset({"_count", "_offset", "_format"})
DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 500

Builder = Callable[[], dict[str, Any]]

_VITAL_ID = re.compile(rf"^(?P<vid>[0-9a-f-]{{36}})-(?P<suffix>{'|'.join(r.VITAL_SUFFIXES)})$")
_RESULT_LOAD = (
    selectinload(Result.findings),
    selectinload(Result.study),
    selectinload(Result.vitals),
)


def _result(session: Session, result_id: str, kind: str | None = None) -> Result | None:
    query = select(Result).options(*_RESULT_LOAD).where(Result.id == result_id)
    if kind is not None:
        query = query.where(Result.kind == kind)
    return session.scalars(query).first()


def _observation(session: Session, resource_id: str) -> dict[str, Any] | None:
    match = _VITAL_ID.match(resource_id)
    if match:
        vitals = session.get(VitalsObservation, match["vid"])
        if vitals is None:
            return None
        return next((obs for obs in r.vital_observations(vitals) if obs["id"] == resource_id), None)
    finding = session.get(Finding, resource_id)
    if finding is None:
        return None
    result = _result(session, finding.result_id)
    return None if result is None else r.finding_observation(result, finding)


def read(session: Session, resource_type: str, resource_id: str) -> dict[str, Any] | None:
    """One resource by type and id; ``None`` when absent or the type is not served."""
    if resource_type == "Patient":
        patient = session.get(Patient, resource_id)
        return None if patient is None else r.patient(patient)
    if resource_type == "ImagingStudy":
        study = session.scalars(
            select(Study).options(selectinload(Study.instances)).where(Study.id == resource_id)
        ).first()
        return None if study is None else r.imaging_study(study)
    if resource_type == "Observation":
        return _observation(session, resource_id)
    if resource_type == "DiagnosticReport":
        result = _result(session, resource_id, "imaging")
        return None if result is None else r.diagnostic_report(result)
    if resource_type == "RiskAssessment":
        result = _result(session, resource_id, "triage")
        return None if result is None else r.risk_assessment(result)
    if resource_type == "Provenance":
        result = _result(session, resource_id)
        return None if result is None else r.provenance(result)
    if resource_type == "Device":
        device = session.get(Device, resource_id)
        return None if device is None else r.device(device)
    return None


def patient_of(session: Session, resource_type: str, resource_id: str) -> str | None:
    """The id of the Patient a resource is about (itself for a Patient); ``None`` for a Device or unknown.

    Provenance has no subject element in FHIR R4, so callers that scope access by patient ask here.
    """
    if resource_type == "Patient":
        return resource_id if session.get(Patient, resource_id) is not None else None
    if resource_type == "ImagingStudy":
        return session.scalars(select(Study.patient_id).where(Study.id == resource_id)).first()
    if resource_type in ("DiagnosticReport", "RiskAssessment", "Provenance"):
        return session.scalars(select(Result.patient_id).where(Result.id == resource_id)).first()
    if resource_type == "Observation":
        match = _VITAL_ID.match(resource_id)
        if match:
            query = select(VitalsObservation.patient_id).where(VitalsObservation.id == match["vid"])
            return session.scalars(query).first()
        return session.scalars(
            select(Result.patient_id)
            .join(Finding, Finding.result_id == Result.id)
            .where(Finding.id == resource_id)
        ).first()
    return None


def _patient_id(value: str) -> str:
    # Accept both "123" and "Patient/123", as FHIR clients send either.
    return value.removeprefix("Patient/")


def _patient_query(params: Mapping[str, str]) -> Select[Any]:
    query = select(Patient).order_by(Patient.created, Patient.id)
    if "_id" in params:
        query = query.where(Patient.id == params["_id"])
    if "identifier" in params:
        token = params["identifier"]
        if "|" in token:
            system, value = token.split("|", 1)
            if system == "":
                issuer = ""
            elif system.startswith(c.ISSUER_PREFIX):
                issuer = unquote(system.removeprefix(c.ISSUER_PREFIX))
            else:
                # Only our own issuer systems exist in this record: an unknown one matches nothing.
                return query.where(Patient.id.is_(None))
            query = query.where(Patient.identifier == value, Patient.issuer == issuer)
        else:
            query = query.where(Patient.identifier == token)
    return query


def _results_query(params: Mapping[str, str], kind: str | None) -> Select[Any]:
    query = select(Result).options(*_RESULT_LOAD).order_by(Result.created_at, Result.id)
    if kind is not None:
        query = query.where(Result.kind == kind)
    if "_id" in params:
        query = query.where(Result.id == params["_id"])
    if "patient" in params:
        query = query.where(Result.patient_id == _patient_id(params["patient"]))
    return query


def _all_matches(session: Session, resource_type: str, params: Mapping[str, str]) -> list[Builder]:
    """Builders of every matching resource, in a stable order; built lazily so only one page is rendered."""
    if resource_type == "Patient":
        return [partial(r.patient, p) for p in session.scalars(_patient_query(params))]
    if resource_type == "Device":
        query = select(Device).order_by(Device.created, Device.id)
        if "_id" in params:
            query = query.where(Device.id == params["_id"])
        return [partial(r.device, d) for d in session.scalars(query)]
    if resource_type == "ImagingStudy":
        studies = select(Study).options(selectinload(Study.instances)).order_by(Study.created, Study.id)
        if "_id" in params:
            studies = studies.where(Study.id == params["_id"])
        if "patient" in params:
            studies = studies.where(Study.patient_id == _patient_id(params["patient"]))
        return [partial(r.imaging_study, s) for s in session.scalars(studies)]
    if resource_type == "DiagnosticReport":
        reports = session.scalars(_results_query(params, "imaging"))
        return [partial(r.diagnostic_report, x) for x in reports]
    if resource_type == "RiskAssessment":
        assessments = session.scalars(_results_query(params, "triage"))
        return [partial(r.risk_assessment, x) for x in assessments]
    if resource_type == "Provenance":
        return [partial(r.provenance, x) for x in session.scalars(_results_query(params, None))]
    # Observation: the AI findings of imaging results and the vital signs behind triage results.
    category = params.get("category")
    if category not in (None, "imaging", "vital-signs"):
        return []
    id_filter = {k: v for k, v in params.items() if k == "patient"}
    out: list[Builder] = []
    for result in session.scalars(_results_query(id_filter, None)):
        if result.kind == "imaging" and category in (None, "imaging"):
            out += [partial(r.finding_observation, result, f) for f in result.findings]
        if result.kind == "triage" and category in (None, "vital-signs") and result.vitals is not None:
            out += [partial(dict, o) for o in r.vital_observations(result.vitals)]
    if "_id" in params:
        wanted = params["_id"]
        out = [build for build in out if build()["id"] == wanted]
    return out


def _int_param(params: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise InvalidSearch(f"Search parameter {name} must be an integer from 0 to {high}.") from e
    if not 0 <= value <= high:
        raise InvalidSearch(f"Search parameter {name} must be an integer from 0 to {high}.")
    return value


def search(session: Session, resource_type: str, params: Mapping[str, str], base_url: str) -> dict[str, Any]:
    """A ``searchset`` Bundle of ``resource_type`` matching ``params``; ``total`` counts every match."""
    if resource_type not in SEARCH_PARAMS:
        raise InvalidSearch(
            f"Resource type {resource_type!r} is not served; "
            f"supported types are {', '.join(SUPPORTED_TYPES)}."
        )
    allowed = set(SEARCH_PARAMS[resource_type]) | _COMMON
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidSearch(
            f"Search parameter(s) {', '.join(unknown)} not supported for {resource_type}; "
            f"supported are {', '.join(sorted(allowed))}."
        )
    count = _int_param(params, "_count", DEFAULT_COUNT, MAX_COUNT)
    offset = _int_param(params, "_offset", 0, 10**9)
    base = base_url.rstrip("/")
    matches = _all_matches(session, resource_type, params)
    page = [build() for build in matches[offset : offset + count]]
    query = {k: v for k, v in params.items() if k != "_format"}
    links = [{"relation": "self", "url": f"{base}/{resource_type}?{urlencode(query)}"}]
    if offset + count < len(matches):
        links.append(
            {
                "relation": "next",
                "url": f"{base}/{resource_type}?{urlencode({**query, '_offset': str(offset + count)})}",
            }
        )
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": iso(utcnow())},
        "type": "searchset",
        "timestamp": iso(utcnow()),
        "total": len(matches),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in page
        ],
    }


def capability_statement(base_url: str, software_version: str) -> dict[str, Any]:
    """The server's R4 CapabilityStatement: read and search-type for every served type, JSON only."""
    base = base_url.rstrip("/")
    resources = []
    for resource_type, params in SEARCH_PARAMS.items():
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [
                    {"name": name, "type": kind, "documentation": doc} for name, (kind, doc) in params.items()
                ]
                + [{"name": "_count", "type": "number", "documentation": f"Page size, at most {MAX_COUNT}"}],
            }
        )
    # The audit trail is served too, to auditors only (permission audit:read).
    resources.append(_audit_event.capability_resource())
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": iso(utcnow()),
        "publisher": "dxassist",
        "kind": "instance",
        "software": {"name": "dxassist", "version": software_version},
        "implementation": {"description": "dxassist patient record (AI diagnostic assist)", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only views of AI results; every route takes a bearer token.",
                "security": {
                    "service": [
                        c.concept(
                            "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "OAuth",
                            "OAuth",
                        )
                    ],
                    "description": "Authorization: Bearer <token> issued by dxassist.",
                },
                "resource": resources,
            }
        ],
    }
