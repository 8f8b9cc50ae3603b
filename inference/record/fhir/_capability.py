"""The server's R4 CapabilityStatement: what the FHIR views serve."""

from __future__ import annotations

from typing import Any

from inference.record._types import iso, utcnow
from inference.record.fhir import _audit_event, _everything
from inference.record.fhir import _codes as c
from inference.record.fhir._params import capability_params
from inference.record.fhir._search import MAX_COUNT, SEARCH_PARAMS


def capability_statement(base_url: str, software_version: str) -> dict[str, Any]:
    """The server's R4 CapabilityStatement: read, vread (the current version) and search-type for every
    served type, Patient ``$everything``, JSON only."""
    base = base_url.rstrip("/")
    resources: list[dict[str, Any]] = []
    for resource_type, params in SEARCH_PARAMS.items():
        resource: dict[str, Any] = {
            "type": resource_type,
            "interaction": [
                {"code": "read"},
                {"code": "vread"},
                {
                    "code": "history-instance",
                    "documentation": "A history Bundle of the current version, the only one kept.",
                },
                {"code": "search-type"},
            ],
            # meta.versionId on every resource; only the current version is kept (a vread of an older
            # one is 404, the history lists the current one), so no earlier version is read.
            "versioning": "versioned",
            "readHistory": False,
            # A read answers 304 to If-None-Match naming its version or If-Modified-Since its time.
            "conditionalRead": "full-support",
            "searchParam": [
                {"name": name, "type": kind, "documentation": doc} for name, (kind, doc) in params.items()
            ]
            + capability_params(MAX_COUNT),
        }
        if resource_type == "Patient":
            # Patient $everything: the patient's record in one paged Bundle.
            resource["operation"] = [_everything.capability_operation()]
        resources.append(resource)
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
                "documentation": "Read-only views of AI results; every route takes a bearer token. Every "
                'resource carries meta.versionId (a read\'s ETag W/"n"); the record keeps the current '
                "version only: a vread of another version answers 404, an instance's _history lists "
                "the current version alone. A read with If-None-Match naming its ETag, or "
                "If-Modified-Since at or after its Last-Modified, answers 304 Not Modified. Search "
                "parameters not listed here are ignored (and left out of the Bundle's self link) unless "
                "the request says Prefer: handling=strict, which makes them a 400. JSON only: other "
                "formats answer 406.",
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
