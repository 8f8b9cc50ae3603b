"""Patient ``$everything`` (FHIR R4 Patient operation): one patient's record as one paged searchset Bundle.

The Bundle holds what the per-type searches with ``patient={id}`` (``_id={id}`` for the Patient) return to
the same caller, through the same scoped queries, in this order: the Patient, its ImagingStudies,
DiagnosticReports, RiskAssessments, Observations, Provenances. Devices are about no patient, so they are
no match; each page adds the Devices its resources reference (the model versions), once each, as
``search.mode`` ``include`` (FHIR R4: the server SHOULD return the resources the included ones reference),
not counted in ``total``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from inference.record._errors import InvalidSearch
from inference.record._models import Device, Patient, Result, Study
from inference.record._scope import Scope
from inference.record._types import as_utc, fhir_date, utcnow
from inference.record.fhir import _resources as r
from inference.record.fhir._audit_event import _DATE, _day_bounds
from inference.record.fhir._params import applied, page_size, with_count
from inference.record.fhir._search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    int_param,
    observed_range,
    results_query,
    scoped_query,
)

TYPES: Final[tuple[str, ...]] = (
    "Patient",
    "ImagingStudy",
    "DiagnosticReport",
    "RiskAssessment",
    "Observation",
    "Provenance",
)
"""The types of a patient's record, in the order the Bundle gives them."""
PARAMS: Final[dict[str, tuple[str, str]]] = {
    # name -> (FHIR type, what it does)
    "_type": ("string", f"Comma-separated resource types to include, of {', '.join(TYPES)}"),
    "_since": (
        "instant",
        "Only resources the record changed at or after this instant (their meta.lastUpdated; a Patient "
        "or an ImagingStudy changes when a later filing completes it)",
    ),
    "start": (
        "date",
        "Only resources whose care date (a study's date, when the vital signs were taken, else when "
        "filed) is on or after this day, month or year, in UTC (the Patient has none: always kept)",
    ),
    "end": (
        "date",
        "Only resources whose care date is on or before this day, month or year, in UTC (the Patient has "
        "none: always kept)",
    ),
    "_count": ("integer", f"Page size, at most {MAX_COUNT}"),
}
SNAPSHOT: Final = "_snapshot"
"""Parameter of the ``next`` links: when the first page was read (an instant). The later pages keep to the
rows the record had filed by then: a result filed meanwhile sorts among the pages still to come (its
report, assessment and Observations within their types) and would shift their offsets, an entry twice."""
AFTER: Final = "_after"
"""Parameter of the ``next`` links: the last match of the page (``Type/id``); the next page starts after
it. With ``_since``, a Patient or an ImagingStudy that a filing changes while the client pages joins the
matches, ahead of the pages still to come (the Bundle lists them first): offsets would shift, an entry
twice. It is brought by the next ``$everything`` (its meta.lastUpdated is after the first page's time)."""
SINCE_TIMESTAMP: Final = "_timestamp"
"""Parameter of the ``next`` links: the first page's Bundle ``timestamp``, which every page repeats (a
client resumes with ``_since`` from any of them). Not later than ``_snapshot``, and earlier on PostgreSQL
while another transaction is open (``_search.read_from``): the snapshot says what the pages list, this
what a resuming client must ask for again."""
_APPLIED: Final = frozenset({*PARAMS, "_offset", "_format", SNAPSHOT, AFTER, SINCE_TIMESTAMP})
_AFTER: Final = re.compile(rf"^({'|'.join(TYPES)})/[A-Za-z0-9.-]{{1,80}}$")
_RESULT_KIND: Final[dict[str, str | None]] = {
    "DiagnosticReport": "imaging",
    "RiskAssessment": "triage",
    "Observation": None,
    "Provenance": None,
}

_BATCH: Final = 100
"""Rows read at a time: every row of the patient is walked to count ``total`` (an ICU stay files vital
signs many times a day), so only a batch of them, and the page's, is held at once."""

Builder = Callable[[], dict[str, Any]]
Entry = tuple[str, Builder]
"""A match: its ``Type/id`` (known before it is built) and its builder."""
Span = tuple[datetime, datetime]
"""The care date a resource is about, ``(start, end)`` in UTC, ``end`` excluded (an instant: equal)."""
Keep = Callable[[datetime, datetime, Span | None], bool]
"""Whether a row is in: (when the record filed it, its meta.lastUpdated, its care date or None)."""
_INSTANT: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
_DAY: Final = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _types(value: str | None) -> tuple[str, ...]:
    if value is None:
        return TYPES
    wanted = {name.strip() for name in value.split(",")}
    unknown = sorted(repr(name[:64]) for name in wanted - set(TYPES))
    if unknown:
        raise InvalidSearch(
            f"Parameter _type names type(s) that are not part of a patient's record here: "
            f"{', '.join(unknown)}; accepted are {', '.join(TYPES)} (comma-separated)."
        )
    return tuple(name for name in TYPES if name in wanted)


def _since(value: str) -> datetime:
    """The instant of ``_since`` (FHIR R4 type instant: to the second at least, with a time zone)."""
    if _INSTANT.match(value) is None:
        raise InvalidSearch(
            "Parameter _since takes an instant: a date and time to the second with a time zone "
            "(e.g. 2026-11-20T07:00:00Z), without a prefix."
        )
    return _bounds("_since", value)[0]


def _day(name: str, value: str) -> Span:
    """The days ``start`` or ``end`` covers (FHIR R4 type date: a year, a month or a day), in UTC."""
    if _DAY.match(value) is None:
        raise InvalidSearch(
            f"Parameter {name} takes a date (YYYY, YYYY-MM or YYYY-MM-DD), without a prefix or a time: "
            "$everything's start and end are care dates, whole days."
        )
    return _bounds(name, value)


def _bounds(name: str, value: str) -> Span:
    try:
        return _day_bounds(value)
    except InvalidSearch as e:
        kind = "dateTime" if "T" in value else "date (YYYY, YYYY-MM or YYYY-MM-DD)"
        raise InvalidSearch(f"Parameter {name} must be a valid {kind}, years 1 to 9999 in UTC.") from e


def _snapshot(value: str, name: str = SNAPSHOT) -> datetime:
    match = _DATE.match(value)
    if match is None or match["prefix"] or "T" not in value:
        raise InvalidSearch(f"Parameter {name} is an instant with a time zone, as the next link gives it.")
    return _bounds(name, match["value"])[0]


def _keep(params: Mapping[str, str], snapshot: datetime) -> Keep:
    """The row filter of ``_since``, ``start`` and ``end`` (all of them; each optional), and of the paging's
    ``snapshot``: nothing filed after it.

    FHIR R4 (Patient $everything): ``start`` and ``end`` are dates about care, not the record: a resource
    is in when its care date falls on one of the days from ``start`` to ``end``, both included (a study of
    the end day is in, whatever its time). ``_since`` is an instant about the record: a resource is in
    when it was changed at or after it (its meta.lastUpdated).

    Raises:
        InvalidSearch: A malformed value.
    """
    since = _since(params["_since"]) if "_since" in params else None
    first = _day("start", params["start"])[0] if "start" in params else None
    after = _day("end", params["end"])[1] if "end" in params else None

    def keep(filed: datetime, updated: datetime, care: Span | None) -> bool:
        if as_utc(filed) > snapshot:
            return False
        if since is not None and as_utc(updated) < since:
            return False
        if care is None:
            return True
        low, high = as_utc(care[0]), as_utc(care[1])
        # An instant is on a day when it is within it; a day (a study date) when it is that day.
        if first is not None and (low < first if low == high else high <= first):
            return False
        return after is None or low < after

    return keep


def _after(value: str) -> str:
    if _AFTER.match(value) is None:
        raise InvalidSearch(
            f"Parameter {AFTER} is a resource of the record (Type/id), as the next link gives it."
        )
    return value


def _study_date(study: Study) -> Span:
    """An ImagingStudy's care date: its study date (``started``), the whole day, else when it was filed."""
    day = fhir_date(study.study_date)
    if day is None:
        return study.created, study.created
    return _day_bounds(day)


def _entries(
    session: Session, patient_id: str, types: Sequence[str], scope: Scope | None, keep: Keep
) -> Iterator[Entry]:
    """The matches of the Bundle, in its order."""
    for resource_type in types:
        yield from _builders(session, patient_id, resource_type, scope, keep)


def _page(
    entries: Iterator[Entry], offset: int, after: str | None, count: int
) -> tuple[int, int | None, list[Entry]]:
    """``(total, where the page starts, its entries)``: ``count`` entries from ``offset``, or from right after
    the entry ``after`` names (the start None when no entry is ``after``)."""
    start = offset if after is None else None
    total = 0
    page: list[Entry] = []
    for index, entry in enumerate(entries):
        if start is not None and start <= index < start + count:
            page.append(entry)
        if entry[0] == after:
            start = index + 1
        total = index + 1
    return total, start, page


def _builders(
    session: Session, patient_id: str, resource_type: str, scope: Scope | None, keep: Keep
) -> Iterator[Entry]:
    """The resources of one type about the patient that the caller may read and ``keep`` admits, in the
    order of that type's search (the same scoped queries)."""
    if resource_type == "Patient":
        query = scoped_query(scope, select(Patient).where(Patient.id == patient_id), None, Patient.id)
        for patient in session.scalars(query):
            if keep(patient.created, r.changed_at(patient), None):
                yield f"Patient/{patient.id}", partial(r.patient, patient)
        return
    if resource_type == "ImagingStudy":
        studies = (
            select(Study)
            .options(selectinload(Study.instances))
            .where(Study.patient_id == patient_id)
            .order_by(Study.created, Study.id)
        )
        studies = scoped_query(scope, studies, Study.facility, Study.patient_id)
        for study in session.scalars(studies.execution_options(yield_per=_BATCH)):
            if keep(study.created, r.changed_at(study), _study_date(study)):
                yield f"ImagingStudy/{study.id}", partial(r.imaging_study, study)
        return
    query = scoped_query(
        scope,
        results_query({"patient": patient_id}, _RESULT_KIND[resource_type]),
        Result.facility,
        Result.patient_id,
    )
    for result in session.scalars(query.execution_options(yield_per=_BATCH)):
        # A result's resources share its care date: the one an Observation search's ``date`` uses. Their
        # meta.lastUpdated is when the result was filed, the vital signs' when they were.
        updated = result.created_at
        if resource_type == "Observation" and result.kind == "triage" and result.vitals is not None:
            updated = result.vitals.created
        if not keep(result.created_at, updated, observed_range(result)):
            continue
        if resource_type == "DiagnosticReport":
            yield f"DiagnosticReport/{result.id}", partial(r.diagnostic_report, result)
        elif resource_type == "RiskAssessment":
            yield f"RiskAssessment/{result.id}", partial(r.risk_assessment, result)
        elif resource_type == "Provenance":
            yield f"Provenance/{result.id}", partial(r.provenance, result)
        elif result.kind == "imaging":
            yield from (
                (f"Observation/{finding.id}", partial(r.finding_observation, result, finding))
                for finding in result.findings
            )
        elif result.vitals is not None:
            yield from (
                (f"Observation/{obs['id']}", partial(dict, obs))
                for obs in r.vital_observations(result.vitals)
            )


def _referenced_devices(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of the Devices ``resources`` reference, each once, in the order first referenced."""
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            reference = value.get("reference")
            if isinstance(reference, str) and reference.startswith("Device/"):
                found.setdefault(reference.removeprefix("Device/"), None)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for resource in resources:
        walk(resource)
    return [*found]


def _included(session: Session, base: str, resources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Bundle entries (``search.mode`` ``include``) of the Devices ``resources`` reference."""
    wanted = _referenced_devices(resources)
    if not wanted:
        return []
    rows = {row.id: row for row in session.scalars(select(Device).where(Device.id.in_(wanted)))}
    return [
        {
            "fullUrl": f"{base}/Device/{device_id}",
            "resource": r.device(rows[device_id]),
            "search": {"mode": "include"},
        }
        for device_id in wanted
        if device_id in rows
    ]


def reachable(session: Session, patient_id: str, scope: Scope | None) -> bool:
    """Whether the caller may read anything of the patient (the Patient or one of its rows), whatever the
    operation's filters: a caller that may read nothing is refused as a read of the Patient is."""
    checks = (
        scoped_query(scope, select(Patient.id).where(Patient.id == patient_id), None, Patient.id),
        scoped_query(
            scope, select(Study.id).where(Study.patient_id == patient_id), Study.facility, Study.patient_id
        ),
        scoped_query(
            scope,
            select(Result.id).where(Result.patient_id == patient_id),
            Result.facility,
            Result.patient_id,
        ),
    )
    return any(session.execute(check.limit(1)).first() is not None for check in checks)


def everything(
    session: Session,
    patient_id: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
    scope: Scope | None = None,
    *,
    strict: bool = False,
    now: datetime | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of one page of the patient's record (``total``: every match the caller may
    read), with ``self`` and ``next`` links to ``{base}/Patient/{id}/$everything``, then the Devices the
    page's resources reference (``search.mode`` ``include``, once each, not counted in ``total``). The
    ``next`` link carries ``_snapshot``, when the first page was read: the later pages list what was filed
    by then, each row once, however many results arrive while the client pages: ``now`` (default: when
    called), taken by the caller before the transaction's first query. The Bundle's ``timestamp`` is
    ``timestamp`` (default: the snapshot; ``_search.read_from``), taken before it too, so that a client
    that resumes with ``_since=<timestamp>`` misses nothing committed meanwhile; the ``next`` link carries
    it (``_timestamp``), so every page repeats the first page's.

    Unsupported parameters are ignored and left out of the links unless ``strict``.

    Raises:
        InvalidSearch: An unsupported parameter when ``strict``, a repeated one, a malformed value, a
            ``_type`` naming a type outside the patient's record.
    """
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    kept = applied("Patient/$everything", pairs, _APPLIED, strict=strict, repeatable=frozenset())
    values = dict(kept)
    types = _types(values.get("_type"))
    if SNAPSHOT in values:
        snapshot = _snapshot(values[SNAPSHOT])
        # A link of an older server carries no _timestamp: its snapshot was its timestamp.
        given = values.get(SINCE_TIMESTAMP)
        timestamp = snapshot if given is None else min(_snapshot(given, SINCE_TIMESTAMP), snapshot)
    else:
        snapshot = utcnow() if now is None else now
        timestamp = snapshot if timestamp is None else min(timestamp, snapshot)
    keep = _keep(values, snapshot)
    count = page_size(values.get("_count"), DEFAULT_COUNT, MAX_COUNT, summary=values.get("_summary"))
    offset = int_param(values, "_offset", 0, 10**9)
    after = _after(values[AFTER]) if AFTER in values else None
    total, start, page = _page(_entries(session, patient_id, types, scope, keep), offset, after, count)
    if start is None:
        # No longer listed (a sharing consent withdrawn, say): the page is the one at ``_offset``.
        start = offset
        total, _, page = _page(_entries(session, patient_id, types, scope, keep), offset, None, count)
    query = with_count([(k, v) for k, v in kept if k != "_format"], count)
    base = base_url.rstrip("/")
    resources = [build() for _, build in page]
    # Microseconds: the precision the record files rows with.
    pin = [
        (name, instant.isoformat(timespec="microseconds").replace("+00:00", "Z"))
        for name, instant in ((SNAPSHOT, snapshot), (SINCE_TIMESTAMP, timestamp))
    ]
    if page:
        pin.append((AFTER, page[-1][0]))
    bundle = r.searchset(
        base,
        f"Patient/{patient_id}/$everything",
        query,
        resources,
        total=total,
        offset=start,
        count=count,
        pin=pin,
        timestamp=timestamp,
    )
    bundle["entry"] += _included(session, base, resources)
    return bundle


def capability_operation() -> dict[str, Any]:
    """The CapabilityStatement's declaration of the operation (on the Patient resource)."""
    documentation = "; ".join(f"{name}: {doc}" for name, (_kind, doc) in PARAMS.items())
    return {
        "name": "everything",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        "documentation": (
            f"GET only. {documentation}; _offset, _snapshot and _after page (the next link gives them)."
        ),
    }
