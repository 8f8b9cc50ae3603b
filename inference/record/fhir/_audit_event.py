"""The audit trail as FHIR R4 ``AuditEvent`` resources: one per entry, searchable by date, patient, agent.

Mapping (R4 AuditEvent, valid as R4B):
- ``id``: the entry's ``seq``; ``recorded``: its time; ``type``: DICOM audit event type (110110 Patient
  Record for patient data, 110101 Audit Log Used, 110100 Application Activity for model changes, the
  registry decisions of an operator (``model:promote``, ``model:rollback``, ``model:register``) and
  dead-letter retries, 110104 DICOM Instances Transferred for a delivery of a result's SR and captures
  to a destination, 110114 User Authentication for a sign-in or sign-out of the pages and a bearer token
  refused by the API, 110113 Security Alert for a DICOM node refused at association and a reader's account
  created, disabled, bound to or unbound from the identity provider, 110112 Query for a
  worklist, a FHIR search or a page of Patient ``$everything`` (one entry per resource type it disclosed),
  110106 Export for a training-set export);
  ``subtype``: our permission name (``urn:dxassist:action``), and for User Authentication and Security
  Alert its DICOM event type (110122 Login, 110123 Logout; 110126 Node Authentication, 110136 Security
  Roles Changed, 110137 User Security Attributes Changed); ``action``: C, R, U, D or E.
- ``outcome``: 0 success (or nothing to change), 4 refused, not found or failed (``outcomeDesc`` says
  which); none for an ``attempt``, whose outcome is a second entry with the same request id.
- ``agent[0]``: the caller: ``who.identifier`` the token subject, ``role`` its role, ``location`` its
  facility, ``network.address`` the client address; for a DICOM node over mutual TLS, ``altId`` the
  certificate it presented (``certificate sha256:<hex> CN=... DNS=...``, :data:`CERTIFICATE`). A delivery
  adds ``agent[1]``, the destination (DICOM 110152 Destination Role ID, by its configured name).
- ``entity``: the Patient (by reference) and the resource touched (by identifier), with the chain hash
  and, for an entry made by an HTTP request, its ``X-Request-ID`` (``detail`` ``request-id``); for one
  made outside a request, the correlation id of its log lines (``analysis-...``, ``retry-...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from inference import vocabulary as v
from inference.record._errors import InvalidSearch
from inference.record._types import iso
from inference.record.fhir import _codes as c
from inference.record.fhir._params import COMMON_PARAMS, applied, capability_params, page_size, with_count
from inference.record.fhir._resources import searchset

SEARCH_PARAMS: Final[dict[str, tuple[str, str]]] = {
    "_id": ("token", "Logical id (the entry's sequence number)"),
    "date": ("date", "When recorded; prefixes eq, ge, gt, le, lt; may be repeated for a range"),
    "patient": ("reference", "The Patient the access was about"),
    "agent": ("token", "Who acted: the token subject"),
}
DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 500
SNAPSHOT: Final = "_snapshot"
"""Parameter of the ``next`` links: the newest entry (sequence number) the paged search lists. The trail
grows while a client pages (each page read is an entry, newest first): without it, every later page
would start with entries of the previous one."""

ACTION_SYSTEM: Final = "urn:dxassist:action"
SUBJECT_SYSTEM: Final = "urn:dxassist:subject"
ROLE_SYSTEM: Final = "urn:dxassist:role"
RESOURCE_SYSTEM: Final = "urn:dxassist:resource"
HASH_SYSTEM: Final = "urn:dxassist:audit-hash"
DESTINATION_SYSTEM: Final = "urn:dxassist:destination"
ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
AUDIT_SOURCE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"

_CREATE: Final = frozenset({"studies:submit", "vitals:submit", "feedback:write", "break-glass:open"})
_UPDATE: Final = frozenset({"consent:write"})
_EXECUTE: Final = frozenset(
    {"model:change", "model:promote", "model:rollback", "model:register", "dead-letter:retry"}
)
_DELETE: Final = frozenset({"dead-letter:discard"})
"""An operator giving up on a dead letter (a patient's objects or received files deleted): type 110110
Patient Record, action D (DICOM PS3.15 A.5.3: Application Activity takes action E only)."""
ATTEMPT: Final = "attempt"
"""The outcome of an entry written before an action whose result is only known afterwards (a registry
decision: the alias lives in MLflow, the trail in the record); the result follows in its own entry."""
_SUCCESS: Final = frozenset({"success", "duplicate", "break_glass", "unchanged"})
DELIVERY: Final = "result:deliver"
"""A result's objects sent to a destination: DICOM PS3.15 A.5.3.4, action R (the sender's side)."""
API_AUTHENTICATION: Final = "api:authenticate"
"""A bearer token the API refused (none, malformed, expired, signed by another key): DICOM PS3.15 A.5.3.12
User Authentication (a failed login), action E."""
_AUTHENTICATION: Final = frozenset({"ui:sign_in", "ui:sign_out", API_AUTHENTICATION})
"""A person signing in or out of the pages, a refused bearer token: DICOM PS3.15 A.5.3.12 User
Authentication, action E, with its event type Login (110122) or Logout (110123)."""
_QUERIES: Final = frozenset({"worklist:read"})
"""Lists of what matched (a worklist; FHIR searches and Patient ``$everything`` too, :func:`_is_query`):
DICOM PS3.15 A.5.3.10 Query, action E."""
_SEARCHED: Final = "fhir:read"
EXPORT: Final = "export:training-set"
"""Labelled model inputs written out of the system (``dxassist export-training-set``): DICOM PS3.15 A.5.3.4
Export, action R."""
ACCOUNT_CHANGES: Final = {
    "user:add": ("110136", "Security Roles Changed"),
    "user:disable": ("110137", "User Security Attributes Changed"),
    "user:sso_bind": ("110137", "User Security Attributes Changed"),
    "user:sso_unbind": ("110137", "User Security Attributes Changed"),
    "ui:sso_bind": ("110137", "User Security Attributes Changed"),
    "token:issue": ("110137", "User Security Attributes Changed"),
    "token:revoke": ("110137", "User Security Attributes Changed"),
    "token:unrevoke": ("110137", "User Security Attributes Changed"),
}
"""A reader's account created, disabled, bound to or unbound from the identity provider's subject, a bearer
token issued, revoked or its revocation taken back: DICOM PS3.15 A.5.3.11 Security Alert (action E) with
its event type from CID 401."""
NODE_REFUSED: Final = "dimse:associate"
"""A DICOM node refused at association (unknown title, another host, another certificate), or accepted
over mutual TLS (outcome ``success``): DICOM PS3.15 A.5.3.11 Security Alert (node authentication), action
E."""
CERTIFICATE: Final = " certificate sha256:"
"""In an entry's ``client``, what follows the address when a DICOM node authenticated with a certificate
(``10.1.2.3 certificate sha256:<hex> CN=<name> DNS=<names>``; a study delivered over several associations
lists each, ``; ``-separated): shown as the agent's ``altId``, the address as its network address."""
_FHIR_TYPES: Final = frozenset(
    {"Patient", "ImagingStudy", "DiagnosticReport", "Observation", "RiskAssessment", "Provenance", "Device"}
)
_DATE: Final = re.compile(
    # A year, a month, a day, or a dateTime with a time zone (FHIR R4 search 3.1.1.4.2: any precision).
    r"^(?P<prefix>eq|ge|gt|le|lt)?(?P<value>\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
    r"(Z|[+-]\d{2}:\d{2}))?)?)?)$"
)


def _is_query(entry: Mapping[str, Any]) -> bool:
    """A worklist, or a FHIR search: its entries name the resource type searched and no resource (one
    entry per patient disclosed), where a read names the resource it read."""
    if entry["action"] in _QUERIES:
        return True
    return entry["action"] == _SEARCHED and bool(entry.get("resource_type")) and not entry.get("resource_id")


def _event_type(action: str, *, query: bool = False) -> dict[str, str]:
    if query:
        return {"system": v.DCM, "code": "110112", "display": "Query"}
    if action == EXPORT:
        return {"system": v.DCM, "code": "110106", "display": "Export"}
    if action == "audit:read":
        return {"system": v.DCM, "code": "110101", "display": "Audit Log Used"}
    if action in _EXECUTE:
        return {"system": v.DCM, "code": "110100", "display": "Application Activity"}
    if action == DELIVERY:
        # DICOM PS3.16 CID 400 (Audit Event ID): the IHE ATNA event of instances sent to another node.
        return {"system": v.DCM, "code": "110104", "display": "DICOM Instances Transferred"}
    if action == NODE_REFUSED or action in ACCOUNT_CHANGES:
        return {"system": v.DCM, "code": "110113", "display": "Security Alert"}
    if action in _AUTHENTICATION:
        return {"system": v.DCM, "code": "110114", "display": "User Authentication"}
    return {"system": v.DCM, "code": "110110", "display": "Patient Record"}


def _action_code(action: str, *, query: bool = False) -> str:
    if query:
        return "E"
    if action in _DELETE:
        return "D"
    if action in _CREATE:
        return "C"
    if action in _UPDATE:
        return "U"
    if action in _EXECUTE or action == NODE_REFUSED or action in _AUTHENTICATION or action in ACCOUNT_CHANGES:
        return "E"
    return "R"


def _dicom_event_type(action: str) -> list[dict[str, str]]:
    # The DICOM event type that User Authentication and Security Alert require: a sign-out is a Logout, a
    # sign-in or a bearer token presented to the API a Login; a refused node a Node Authentication; an
    # account change its CID 401 code.
    if action == NODE_REFUSED:
        return [{"system": v.DCM, "code": "110126", "display": "Node Authentication"}]
    if action in ACCOUNT_CHANGES:
        code, display = ACCOUNT_CHANGES[action]
        return [{"system": v.DCM, "code": code, "display": display}]
    if action not in _AUTHENTICATION:
        return []
    if action == "ui:sign_out":
        return [{"system": v.DCM, "code": "110123", "display": "Logout"}]
    return [{"system": v.DCM, "code": "110122", "display": "Login"}]


def _destination_agent(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    # ATNA's Instances Transferred names both ends: dxassist (the source, agent[0]) and the receiver.
    if entry["action"] != DELIVERY or not entry.get("resource_id"):
        return []
    return [
        {
            "type": {"coding": [{"system": v.DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"identifier": {"system": DESTINATION_SYSTEM, "value": entry["resource_id"]}},
            "requestor": False,
        }
    ]


def audit_event(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The FHIR AuditEvent of one audit entry (as returned by ``Record.audit.search``)."""
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110153",
                    "display": "Source Role ID",
                }
            ]
        },
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": entry["role"]}]}],
        "who": {"identifier": {"system": SUBJECT_SYSTEM, "value": entry["subject"]}},
        "requestor": True,
    }
    if entry.get("facility"):
        agent["location"] = {
            "identifier": {"system": c.FACILITY_SYSTEM, "value": entry["facility"]},
            "display": entry["facility"],
        }
    if entry.get("client"):
        address, certified, certificate = str(entry["client"]).partition(CERTIFICATE)
        agent["network"] = {"address": address[:256], "type": "2"}
        if certified:
            agent["altId"] = f"{certified.strip()}{certificate}"[:1024]
    entities: list[dict[str, Any]] = []
    if entry.get("patient_id"):
        entities.append(
            {
                "what": {"reference": f"Patient/{entry['patient_id']}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    if entry.get("resource_type"):
        what: dict[str, Any] = {
            "identifier": {
                "system": f"{RESOURCE_SYSTEM}:{entry['resource_type']}",
                "value": entry.get("resource_id") or entry["resource_type"],
            },
            "display": entry["resource_type"],
        }
        if entry["resource_type"] in _FHIR_TYPES and entry.get("resource_id"):
            what = {"reference": f"{entry['resource_type']}/{entry['resource_id']}"}
        entities.append(
            {
                "what": what,
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "detail": [
                    {"type": "chain-hash", "valueString": str(entry.get("hash"))},
                    # The X-Request-ID of the request that made the entry: the server's log lines of
                    # that request carry the same id.
                    *(
                        [{"type": "request-id", "valueString": str(entry["request_id"])}]
                        if entry.get("request_id")
                        else []
                    ),
                ],
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry["seq"]),
        "type": _event_type(entry["action"], query=_is_query(entry)),
        "subtype": [{"system": ACTION_SYSTEM, "code": entry["action"]}, *_dicom_event_type(entry["action"])],
        "action": _action_code(entry["action"], query=_is_query(entry)),
        "recorded": iso(entry["time"]),
        # No outcome yet for an attempt: its result is the entry that follows it.
        **({} if entry["outcome"] == ATTEMPT else {"outcome": "0" if entry["outcome"] in _SUCCESS else "4"}),
        "outcomeDesc": entry["outcome"],
        "agent": [agent, *_destination_agent(entry)],
        "source": {
            "observer": {"display": "dxassist"},
            "type": [{"system": AUDIT_SOURCE, "code": "4", "display": "Application Server"}],
        },
    }
    if entry["outcome"] == "break_glass":
        # HL7 v3 ActReason BTG: the access rested on an emergency access, not on the usual rules.
        resource["purposeOfEvent"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "BTG",
                        "display": "break the glass",
                    }
                ]
            }
        ]
    if entities:
        resource["entity"] = entities
    return resource


def _day_bounds(value: str) -> tuple[datetime, datetime]:
    """``(start, end)`` of a FHIR date search value in UTC: a dateTime is one instant (``start == end``); a
    day, a month (``YYYY-MM``) or a year (``YYYY``) is the UTC range it covers, ``end`` excluded.

    Raises:
        InvalidSearch: Not a valid date, or out of years 1 to 9999 once in UTC.
    """
    try:
        if "T" in value:
            # In UTC now: a moment near year 1 or 9999 with a time zone must fail here, not in the query.
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            return moment, moment
        if len(value) == 4:
            year = datetime.strptime(value, "%Y").replace(tzinfo=UTC)
            return year, year.replace(year=year.year + 1)
        if len(value) == 7:
            month = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
            following = (
                month.replace(year=month.year + 1, month=1)
                if month.month == 12
                else month.replace(month=month.month + 1)
            )
            return month, following
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return day, day + timedelta(days=1)
    except (ValueError, OverflowError) as e:
        raise InvalidSearch(
            "Search parameter date must be a valid date (YYYY, YYYY-MM or YYYY-MM-DD) or dateTime, "
            "years 1 to 9999 in UTC."
        ) from e


_PRECISION: Final = re.compile(r"^\d{2}:\d{2}(?P<seconds>:\d{2}(?:\.(?P<fraction>\d{1,6}))?)?")


def search_range(value: str) -> tuple[datetime, datetime]:
    """``(low, high)`` of the range a FHIR date search value implies, in UTC, ``high`` excluded (FHIR R4
    search 3.1.1.4.2): a year, a month or a day as :func:`_day_bounds` has them; a dateTime to its
    precision: its minute, its second, or its last fractional digit (``T10:00Z`` is ten o'clock's minute).

    Raises:
        InvalidSearch: Not a valid date, or out of years 1 to 9999 once in UTC.
    """
    low, high = _day_bounds(value)
    if low != high:
        return low, high
    precision = _PRECISION.match(value.partition("T")[2])
    if precision is not None and precision["fraction"]:
        step = timedelta(microseconds=10 ** (6 - len(precision["fraction"])))
    elif precision is not None and precision["seconds"]:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    try:
        return low, low + step
    except OverflowError as e:
        raise InvalidSearch("Search parameter date must be a dateTime before year 10000 in UTC.") from e


def supported_pairs(params: Sequence[tuple[str, str]], *, strict: bool = False) -> list[tuple[str, str]]:
    """The pairs of an AuditEvent search that are applied: unsupported ones are ignored unless ``strict``.

    Raises:
        InvalidSearch: ``strict`` and an unsupported parameter, or a repeated non-date one.
    """
    return applied("AuditEvent", params, set(SEARCH_PARAMS) | COMMON_PARAMS | {SNAPSHOT}, strict=strict)


def filters(params: Sequence[tuple[str, str]], *, strict: bool = False) -> dict[str, Any]:
    """Keyword filters for ``Record.audit.search`` from the query's ``(name, value)`` pairs.

    Raises:
        InvalidSearch: An unknown parameter when ``strict``, a malformed date or number, or a repeated
            non-date one.
    """
    params = supported_pairs(params, strict=strict)
    out: dict[str, Any] = {}
    for name, value in params:
        if name == "date":
            match = _DATE.match(value)
            if match is None:
                raise InvalidSearch(
                    "Search parameter date takes an optional prefix (eq, ge, gt, le, lt) and a date "
                    "(YYYY, YYYY-MM or YYYY-MM-DD) or a dateTime with a time zone."
                )
            # The range the value implies (a dateTime: its minute, second or fraction), ``end`` excluded.
            prefix = match["prefix"] or "eq"
            start, end = search_range(match["value"])
            if prefix == "eq":
                out["since"], out["until"] = start, end
            elif prefix in ("ge", "gt"):
                out["since"] = start if prefix == "ge" else end
            else:
                out["until"] = end if prefix == "le" else start
        elif name == "patient":
            out["patient_id"] = value.removeprefix("Patient/")
        elif name == "agent":
            out["agent"] = value.split("|", 1)[-1]
        elif name == "_id":
            # An id that is not a sequence number matches nothing (the search still answers a Bundle).
            ok = value.isascii() and value.isdigit() and len(value) <= 18
            out["seq"] = int(value) if ok else -1
        elif name == SNAPSHOT:
            if not (value.isascii() and value.isdigit() and len(value) <= 18):
                raise InvalidSearch(f"Search parameter {SNAPSHOT} must be an entry's sequence number.")
            out["max_seq"] = int(value)
        elif name == "_count":
            out["limit"] = page_size(value, DEFAULT_COUNT, MAX_COUNT)
        elif name == "_offset":
            # isascii: str.isdigit() also accepts '²', which int() refuses.
            if not (value.isascii() and value.isdigit()) or not 0 <= int(value) <= 10**9:
                raise InvalidSearch(f"Search parameter {name} must be an integer from 0 to {10**9}.")
            out["offset"] = int(value)
    out.setdefault("limit", DEFAULT_COUNT)
    if ("_summary", "count") in params:
        out["limit"] = 0  # the total alone
    return out


def bundle(
    total: int,
    entries: Sequence[Mapping[str, Any]],
    params: Sequence[tuple[str, str]],
    base_url: str,
    *,
    offset: int,
    count: int,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of AuditEvents (``base_url`` is the FHIR base); ``timestamp``: when the page
    was read from (``AuditLog.search_audited``; see ``searchset``).

    The ``next`` link of a first page carries ``_snapshot``, its newest entry, so the later pages list the
    entries that were there when paging began (the trail grows meanwhile, newest first).
    """
    # Only what was applied: unsupported (ignored) parameters are left out of the links.
    query = with_count([(k, v) for k, v in supported_pairs(params) if k != "_format"], count)
    pin = [(k, v) for k, v in query if k == SNAPSHOT]
    if not pin and offset == 0 and entries:
        pin = [(SNAPSHOT, str(entries[0]["seq"]))]
    resources = [audit_event(entry) for entry in entries]
    return searchset(
        base_url.rstrip("/"),
        "AuditEvent",
        query,
        resources,
        total=total,
        offset=offset,
        count=count,
        pin=pin,
        timestamp=timestamp,
    )


def capability_resource() -> dict[str, Any]:
    """The CapabilityStatement entry of AuditEvent (read and search-type)."""
    return {
        "type": "AuditEvent",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": n, "type": k, "documentation": d} for n, (k, d) in SEARCH_PARAMS.items()]
        + capability_params(MAX_COUNT),
    }
