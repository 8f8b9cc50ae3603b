"""FHIR read and search over the record: resource by id, searchset Bundles, the CapabilityStatement."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from sqlalchemy import Select, and_, func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from inference import vocabulary as v
from inference.record._errors import InvalidSearch
from inference.record._models import (
    Device,
    Finding,
    Patient,
    Result,
    Study,
    VitalsObservation,
    fold_words,
    normalise_issuer,
)
from inference.record._scope import Scope, visible
from inference.record._types import as_utc, fhir_date, utcnow
from inference.record.fhir import _codes as c
from inference.record.fhir import _resources as r
from inference.record.fhir._audit_event import _DATE, _day_bounds, search_range
from inference.record.fhir._params import COMMON_PARAMS, applied, page_size, with_count

_LAST_UPDATED: Final = (
    "date",
    "When the record filed it (meta.lastUpdated; it never changes after); prefixes eq, ge, gt, le, lt; "
    "may be repeated for a range",
)
_CHANGED: Final = (
    "date",
    "When the record last changed it (meta.lastUpdated: filed, or completed since by a later filing); "
    "prefixes eq, ge, gt, le, lt; may be repeated for a range",
)
_REFERENCE: Final = "its id, Patient/id, or this server's absolute URL of it (another server's: 400)"
SEARCH_PARAMS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    # type -> parameter -> (FHIR search param type, what it matches)
    "Patient": {
        "_id": ("token", "Logical id of the Patient"),
        "_lastUpdated": _CHANGED,
        "identifier": (
            "token",
            "A patient identifier, as value or system|value; system| alone: any the system assigned",
        ),
        "name": (
            "string",
            "A word of the name starts with it (case and accents ignored; several words: in that order); "
            "comma-separated for any of several",
        ),
        "family": ("string", "The same on the family name (names sent as DICOM PN family^given)"),
        "given": ("string", "The same on the given and middle names (names sent as DICOM PN)"),
        "birthdate": (
            "date",
            "Birth date: YYYY, YYYY-MM or YYYY-MM-DD with an optional prefix (eq, ge, gt, le, lt); may be "
            "repeated for a range",
        ),
        "gender": ("token", "male, female, other or unknown (administrative-gender); comma-separated"),
    },
    "ImagingStudy": {
        "_id": ("token", "Logical id"),
        "_lastUpdated": _CHANGED,
        "patient": ("reference", f"The Patient the study is about: {_REFERENCE}"),
        "subject": (
            "reference",
            "The same as patient: a Patient (Patient/id or id); another type matches nothing",
        ),
        "started": (
            "date",
            "The study's date (started: DICOM Study Date, a whole day; a study sent without one matches no "
            "date); prefixes eq, ge, gt, le, lt; may be repeated for a range",
        ),
    },
    "DiagnosticReport": {
        "_id": ("token", "Logical id"),
        "_lastUpdated": _LAST_UPDATED,
        "patient": ("reference", f"The Patient the report is about: {_REFERENCE}"),
        "subject": (
            "reference",
            "The same as patient: a Patient (Patient/id or id); another type matches nothing",
        ),
        "date": (
            "date",
            "The report's clinical time (effectiveDateTime: the study date, a whole day, else when filed); "
            "prefixes eq, ge, gt, le, lt; may be repeated for a range",
        ),
        "status": (
            "token",
            "The report's status (diagnostic-report-status); every report here is preliminary (made by a "
            "model, not confirmed by a reader); comma-separated for any of several",
        ),
        "code": (
            "token",
            f"The report's code: {v.DIAGNOSTIC_IMAGING_STUDY.code} (LOINC, "
            f"{v.DIAGNOSTIC_IMAGING_STUDY.display}) for every report here; code or system|code",
        ),
    },
    "Observation": {
        "_id": ("token", "Logical id"),
        "_lastUpdated": _LAST_UPDATED,
        "patient": ("reference", f"The Patient the observation is about: {_REFERENCE}"),
        "subject": (
            "reference",
            "The same as patient: a Patient (Patient/id or id); another type matches nothing",
        ),
        "category": (
            "token",
            "imaging or vital-signs, alone or as "
            "http://terminology.hl7.org/CodeSystem/observation-category|code; comma-separated: any of them",
        ),
        "code": (
            "token",
            "The Observation's code (LOINC of a vital sign, SNOMED CT of a finding): code or system|code, "
            "comma-separated for any of several",
        ),
        "date": (
            "date",
            "When observed (vital signs: observed_at; AI findings: the study date, else when filed); "
            "prefixes eq, ge, gt, le, lt; may be repeated for a range",
        ),
    },
    "RiskAssessment": {
        "_id": ("token", "Logical id"),
        "_lastUpdated": _LAST_UPDATED,
        "patient": ("reference", f"The Patient the assessment is about: {_REFERENCE}"),
        "subject": (
            "reference",
            "The same as patient: a Patient (Patient/id or id); another type matches nothing",
        ),
        "date": (
            "date",
            "When the vital signs it assesses were measured (occurrenceDateTime: observed_at); prefixes eq, "
            "ge, gt, le, lt; may be repeated for a range",
        ),
    },
    "Provenance": {
        "_id": ("token", "Logical id"),
        "_lastUpdated": _LAST_UPDATED,
        "patient": ("reference", f"The Patient of the resources the provenance is about: {_REFERENCE}"),
    },
    "Device": {"_id": ("token", "Logical id"), "_lastUpdated": _LAST_UPDATED},
}
SUPPORTED_TYPES: Final[tuple[str, ...]] = tuple(SEARCH_PARAMS)
DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 500

Builder = Callable[[], dict[str, Any]]

_VITAL_ID = re.compile(rf"^(?P<vid>[0-9a-f-]{{36}})-(?P<suffix>{'|'.join(r.VITAL_SUFFIXES)})$")
# Results read at a time by an Observation search (several Observations each, so it cannot page in SQL).
_OBSERVATION_BATCH: Final = 200
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


def owner_of(
    session: Session, resource_type: str, resource_id: str
) -> tuple[str | None, str | None, bool] | None:
    """``(patient id, owning facility, patient-level)`` of a resource; None when it does not exist.

    Provenance has no subject element in FHIR R4 and a finding Observation names its patient only through
    its result, so callers that scope access ask here. A Device is about no patient; a Patient is the
    patient itself (patient-level: no owning facility).
    """
    if resource_type == "Patient":
        return (resource_id, None, True) if session.get(Patient, resource_id) is not None else None
    if resource_type == "Device":
        return (None, None, False) if session.get(Device, resource_id) is not None else None
    row: Any = None
    if resource_type == "ImagingStudy":
        row = session.execute(select(Study.patient_id, Study.facility).where(Study.id == resource_id)).first()
    elif resource_type in ("DiagnosticReport", "RiskAssessment", "Provenance"):
        query = select(Result.patient_id, Result.facility).where(Result.id == resource_id)
        if resource_type != "Provenance":
            query = query.where(
                Result.kind == ("imaging" if resource_type == "DiagnosticReport" else "triage")
            )
        row = session.execute(query).first()
    elif resource_type == "Observation":
        match = _VITAL_ID.match(resource_id)
        if match:
            row = session.execute(
                select(Result.patient_id, Result.facility).where(Result.vitals_id == match["vid"])
            ).first()
        else:
            row = session.execute(
                select(Result.patient_id, Result.facility)
                .join(Finding, Finding.result_id == Result.id)
                .where(Finding.id == resource_id)
            ).first()
    return None if row is None else (row[0], row[1], False)


def _ids(params: Mapping[str, str]) -> list[str]:
    """The ids an ``_id`` search asks for: comma-separated, any of them (FHIR R4 token search)."""
    return params["_id"].split(",")


def _patient_id(value: str) -> str:
    # Accept both "123" and "Patient/123", as FHIR clients send either.
    return value.removeprefix("Patient/")


_ABSOLUTE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}


def _origin(url: str) -> tuple[str, str, str]:
    """``(scheme, host[:port], path)`` of a URL, scheme and host lower-cased, a default port left out."""
    parts = urlsplit(url)
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    netloc = netloc.removesuffix(_DEFAULT_PORTS.get(scheme, ""))
    return scheme, netloc, parts.path.rstrip("/")


def local_reference(value: str, base: str) -> str:
    """A reference search value in its relative form: ``https://<base>/Patient/123`` (what a client makes
    of our relative references) as ``Patient/123``; a relative one (``Patient/123``, ``123``) as it is.

    Raises:
        InvalidSearch: An absolute reference to another server than this FHIR ``base`` (this record holds
            none of its resources: answering "none" would read as "this patient has nothing").
    """
    if not _ABSOLUTE.match(value):
        return value
    foreign = InvalidSearch(
        f"A reference search value names a resource on another server; this server's FHIR base is "
        f"{base.rstrip('/')}: give Patient/<id>, the id alone, or {base.rstrip('/')}/Patient/<id>."
    )
    try:
        scheme, netloc, path = _origin(value)
        query = urlsplit(value).query
    except ValueError as e:  # not a URL urllib reads (an unclosed IPv6 bracket): no resource of ours
        raise foreign from e
    ours = _origin(base)
    if (scheme, netloc) != ours[:2] or not path.startswith(f"{ours[2]}/") or query:
        raise foreign
    return path.removeprefix(f"{ours[2]}/")


def subject_as_patient(params: Mapping[str, str], base: str) -> dict[str, str]:
    """``params`` with ``subject`` folded into ``patient`` (R4: ``patient`` is ``subject`` restricted to
    Patients), both in their relative form (:func:`local_reference`; ``base`` is this server's FHIR base).
    A subject of another type, or one that differs from ``patient``, leaves a ``patient`` no row has:
    nothing matches.

    Raises:
        InvalidSearch: ``patient`` or ``subject`` refers to another server.
    """
    out = {
        name: local_reference(value, base) if name in ("patient", "subject") else value
        for name, value in params.items()
    }
    if "subject" not in out:
        return out
    subject = out.pop("subject")
    patient = "" if "/" in subject and not subject.startswith("Patient/") else _patient_id(subject)
    if "patient" in out and _patient_id(out["patient"]) != patient:
        patient = ""
    out["patient"] = patient
    return out


def _tokens(value: str) -> list[tuple[str | None, str]]:
    """The ``(system or None, code)`` alternatives of a token search value: comma-separated (any of them),
    each ``code``, ``system|code`` or ``|code`` (a code without a system: system ``""``)."""
    out: list[tuple[str | None, str]] = []
    for token in value.split(","):
        system, bar, code = token.partition("|")
        out.append((system, code) if bar else (None, token))
    return out


def _token_matches(tokens: Sequence[tuple[str | None, str]], coding: Mapping[str, str]) -> bool:
    """Whether a Coding matches one of the ``tokens`` (FHIR R4 token search)."""
    return any(
        code == coding.get("code") and (system is None or system == coding.get("system", ""))
        for system, code in tokens
    )


_BIRTHDATE: Final = re.compile(
    r"^(?P<prefix>eq|ge|gt|le|lt)?(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?$"
)
_GENDER_SYSTEM: Final = "http://hl7.org/fhir/administrative-gender"
_SEXES: Final = {"male": ("m", "male"), "female": ("f", "female"), "other": ("o", "other")}


_NAME_PARAMS: Final = ("name", "family", "given")
_AND: Final = "\x1f"  # joins repeats of a name parameter (a character folded names never hold)


def _words(column: Any, name: str, value: str) -> Any:
    """A string search on folded name words: every repeat, each any of its comma-separated values, each
    value's words starting words of the name in any order (``benali khadija`` as DICOM shows it, or
    ``khadija benali``)."""
    conditions = []
    for repeat in value.split(_AND):
        wanted = [fold_words(part).split() for part in repeat.split(",")]
        if not all(wanted):
            raise InvalidSearch(f"Search parameter {name} needs letters or digits (e.g. {name}=benali).")
        conditions.append(or_(*(and_(*(column.like(f"% {word}%") for word in words)) for words in wanted)))
    return and_(*conditions)


def _birthdate(value: str) -> Any:
    """The birth dates a FHIR date search value (repeats joined by ``DATE_SEPARATOR``) covers, compared
    as ISO dates (``YYYY-MM-DD`` sorts as it reads)."""
    conditions = []
    for part in value.split(DATE_SEPARATOR):
        match = _BIRTHDATE.match(part)
        try:
            if match is None:
                raise ValueError(part)
            year, month, day = int(match["year"]), int(match["month"] or 1), int(match["day"] or 1)
            start = date(year, month, day)
            if match["day"]:
                end = start + timedelta(days=1)
            elif match["month"]:
                end = date(year + month // 12, month % 12 + 1, 1)
            else:
                end = date(year + 1, 1, 1)
        except (ValueError, OverflowError) as e:
            raise InvalidSearch(
                "Search parameter birthdate takes an optional prefix (eq, ge, gt, le, lt) and a date "
                "(YYYY, YYYY-MM or YYYY-MM-DD)."
            ) from e
        low, high = start.isoformat(), end.isoformat()
        column = Patient.birth_date
        conditions.append(
            {
                "eq": (column >= low) & (column < high),
                "ge": column >= low,
                "gt": column >= high,
                "le": column < high,
                "lt": column < low,
            }[match["prefix"] or "eq"]
        )
    return and_(Patient.birth_date.is_not(None), *conditions)


def _gender(value: str) -> Any:
    """Patients whose recorded sex is one of the tokens (``code`` or ``administrative-gender|code``)."""
    sex = func.lower(func.trim(Patient.sex))
    known = [code for codes in _SEXES.values() for code in codes]
    matches: list[Any] = []
    for system, code in _tokens(value):
        if system not in (None, _GENDER_SYSTEM):
            continue
        if code in _SEXES:
            matches.append(sex.in_(_SEXES[code]))
        elif code == "unknown":
            matches.append(Patient.sex.is_not(None) & sex.not_in(known))
    return or_(*matches) if matches else Patient.id.is_(None)


_DEMOGRAPHICS: Final = frozenset({*_NAME_PARAMS, "birthdate", "gender"})


def _refuse_modifiers(resource_type: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse a demographic parameter with a modifier (``family:exact``, ``name:contains``, ``gender:not``)
    even in a lenient search: ignored, it would answer every patient in scope, the first of whom is not
    the one looked for (FHIR R4: an unsupported modifier is rejected).

    Raises:
        InvalidSearch: Such a parameter.
    """
    if resource_type != "Patient":
        return
    for key, _value in pairs:
        name, colon, modifier = key.partition(":")
        if colon and name in _DEMOGRAPHICS:
            raise InvalidSearch(
                f"Search parameter {name} takes no modifier (:{modifier[:32]} is not supported); give "
                f"{name}= alone (names: a word starts with it, case and accents ignored)."
            )


def _patient_query(params: Mapping[str, str]) -> Select[Any]:
    query = select(Patient).order_by(Patient.created, Patient.id)
    columns = (Patient.name_words, Patient.family_words, Patient.given_words)
    for name, column in zip(_NAME_PARAMS, columns, strict=True):
        if name in params:
            query = query.where(_words(column, name, params[name]))
    if "birthdate" in params:
        query = query.where(_birthdate(params["birthdate"]))
    if "gender" in params:
        query = query.where(_gender(params["gender"]))
    if "_id" in params:
        query = query.where(Patient.id.in_(_ids(params)))
    if "_lastUpdated" in params:
        query = query.where(changed_within(Patient, params["_lastUpdated"]))
    if "identifier" in params:
        token = params["identifier"]
        if "|" in token:
            system, value = token.split("|", 1)
            if system == "":
                issuer = ""
            elif system.startswith(c.ISSUER_PREFIX):
                issuer = normalise_issuer(unquote(system.removeprefix(c.ISSUER_PREFIX)))
            else:
                # Only our own issuer systems exist in this record: an unknown one matches nothing.
                return query.where(Patient.id.is_(None))
            query = query.where(Patient.issuer == issuer)
            if value:  # ``system|`` alone: any identifier the system assigned (FHIR R4 token search)
                query = query.where(Patient.identifier == value)
        else:
            query = query.where(Patient.identifier == token)
    return query


def results_query(params: Mapping[str, str], kind: str | None) -> Select[Any]:
    query = select(Result).options(*_RESULT_LOAD).order_by(Result.created_at, Result.id)
    if kind is not None:
        query = query.where(Result.kind == kind)
    if "_id" in params:
        query = query.where(Result.id.in_(_ids(params)))
    if "patient" in params:
        query = query.where(Result.patient_id == _patient_id(params["patient"]))
    if "_lastUpdated" in params:
        query = query.where(_filed_within(Result.created_at, params["_lastUpdated"]))
    return query


def changed_within(table: type[Patient] | type[Study] | type[Device], value: str) -> Any:
    """The Patients, ImagingStudies or Devices whose meta.lastUpdated (:func:`_resources.changed_at`:
    ``updated``, else, NULL where an older server version filed the row, ``created``) a ``_lastUpdated``
    value admits.

    Each condition is on ``updated``, or on ``created`` where ``updated`` IS NULL, rather than on their
    COALESCE: both keep to the index on ``updated`` (migration 0023).

    Raises:
        InvalidSearch: A malformed value or prefix.
    """
    return or_(
        _filed_within(table.updated, value),
        and_(table.updated.is_(None), _filed_within(table.created, value)),
    )


def _filed_within(column: Any, value: str) -> Any:
    """The rows whose instant ``column`` (their meta.lastUpdated) a ``_lastUpdated`` search value (repeats
    joined by ``DATE_SEPARATOR``) admits, as :func:`date_filter` has it for an instant.

    Raises:
        InvalidSearch: A malformed value or prefix.
    """
    conditions = []
    for part in value.split(DATE_SEPARATOR):
        match = _DATE.match(part)
        if match is None:
            raise InvalidSearch(
                "Search parameter _lastUpdated takes an optional prefix (eq, ge, gt, le, lt) and a date "
                "(YYYY, YYYY-MM or YYYY-MM-DD) or a dateTime with a time zone."
            )
        low, high = search_range(match["value"])
        conditions.append(
            {
                "eq": (column >= low) & (column < high),
                "ge": column >= low,
                "gt": column >= high,
                "le": column < high,
                "lt": column < low,
            }[match["prefix"] or "eq"]
        )
    return and_(*conditions)


def scoped_query(scope: Scope | None, query: Select[Any], owner: Any, patient: Any) -> Select[Any]:
    """``query`` restricted to the rows the caller may read (``scope``; None: unrestricted), the rows'
    owning facility being ``owner`` (None for a patient-level row) and their patient ``patient``."""
    return query if scope is None else query.where(visible(scope, owner=owner, patient=patient))


def _sql_matches(
    session: Session, query: Select[Any], build: Callable[[Any], dict[str, Any]], offset: int, count: int
) -> tuple[int, list[Builder]]:
    """Count in SQL, then load one page only (nothing is loaded for ``_count=0``)."""
    total = int(session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    if count == 0 or offset >= total:
        return total, []
    return total, [partial(build, row) for row in session.scalars(query.limit(count).offset(offset))]


_REPORT_STATUS: Final = {"system": "http://hl7.org/fhir/diagnostic-report-status", "code": "preliminary"}


def _report_matches(
    session: Session, query: Select[Any], params: Mapping[str, str], offset: int, count: int
) -> tuple[int, list[Builder]]:
    """A DiagnosticReport search: ``status`` and ``code`` are the same for every report (preliminary,
    LOINC 18748-4), so they match all or none; ``date`` is the report's clinical time
    (:func:`observed_range`), checked as the results are streamed (the study date is a text column)."""
    for name, coding in (("status", _REPORT_STATUS), ("code", v.DIAGNOSTIC_IMAGING_STUDY.coding())):
        if name in params and not _token_matches(_tokens(params[name]), coding):
            return 0, []
    return _dated_matches(session, query, r.diagnostic_report, params, offset, count)


def _dated_matches(
    session: Session,
    query: Select[Any],
    build: Callable[[Any], dict[str, Any]],
    params: Mapping[str, str],
    offset: int,
    count: int,
    *,
    name: str = "date",
    span: Callable[[Any], tuple[datetime, datetime] | None] | None = None,
) -> tuple[int, list[Builder]]:
    """Rows of ``query`` whose time (``span``: results' clinical time, :func:`observed_range`; None: the
    row has none, and matches no date) the ``name`` parameter takes, checked as they are streamed (a study
    date is a text column); all of them without the parameter."""
    if name not in params:
        return _sql_matches(session, query, build, offset, count)
    when = date_filter(params[name])
    total = 0
    page: list[Builder] = []
    for result in session.scalars(query.execution_options(yield_per=_OBSERVATION_BATCH)):
        bounds = (span or observed_range)(result)
        if bounds is None or not when(*bounds):
            continue
        if offset <= total < offset + count:
            page.append(partial(build, result))
        total += 1
    return total, page


def _matches(
    session: Session,
    resource_type: str,
    params: Mapping[str, str],
    scope: Scope | None,
    offset: int,
    count: int,
) -> tuple[int, list[Builder]]:
    """``(total, builders of one page)``; the caller's scope is part of every query."""
    scoped = partial(scoped_query, scope)
    if resource_type == "Patient":
        query = scoped(_patient_query(params), None, Patient.id)
        return _sql_matches(session, query, r.patient, offset, count)
    if resource_type == "Device":
        # Devices are model versions, about no patient: every FHIR reader sees them.
        query = select(Device).order_by(Device.created, Device.id)
        if "_id" in params:
            query = query.where(Device.id.in_(_ids(params)))
        if "_lastUpdated" in params:
            query = query.where(changed_within(Device, params["_lastUpdated"]))
        return _sql_matches(session, query, r.device, offset, count)
    if resource_type == "ImagingStudy":
        studies = select(Study).options(selectinload(Study.instances)).order_by(Study.created, Study.id)
        if "_id" in params:
            studies = studies.where(Study.id.in_(_ids(params)))
        if "patient" in params:
            studies = studies.where(Study.patient_id == _patient_id(params["patient"]))
        if "_lastUpdated" in params:
            studies = studies.where(changed_within(Study, params["_lastUpdated"]))
        studies = scoped(studies, Study.facility, Study.patient_id)
        return _dated_matches(
            session, studies, r.imaging_study, params, offset, count, name="started", span=_study_day
        )
    if resource_type in ("DiagnosticReport", "RiskAssessment", "Provenance"):
        kind = {"DiagnosticReport": "imaging", "RiskAssessment": "triage", "Provenance": None}[resource_type]
        build = {
            "DiagnosticReport": r.diagnostic_report,
            "RiskAssessment": r.risk_assessment,
            "Provenance": r.provenance,
        }[resource_type]
        query = scoped(results_query(params, kind), Result.facility, Result.patient_id)
        if resource_type == "DiagnosticReport":
            return _report_matches(session, query, params, offset, count)
        if resource_type == "RiskAssessment":
            return _dated_matches(session, query, build, params, offset, count)
        return _sql_matches(session, query, build, offset, count)
    # Observation: the AI findings of imaging results and the vital signs behind triage results. Several
    # observations per result: the scoped results are expanded here (the scope is still in the query).
    # Category: a token (``code``, ``system|code``; comma-separated for any of several).
    categories = _tokens(params["category"]) if "category" in params else None
    imaging, vital_signs = (
        categories is None or _token_matches(categories, {"system": c.OBS_CATEGORY, "code": code})
        for code in ("imaging", "vital-signs")
    )
    if not (imaging or vital_signs):
        return 0, []
    id_filter = {k: v for k, v in params.items() if k == "patient"}
    when = date_filter(params["date"]) if "date" in params else None
    filed = date_filter(params["_lastUpdated"]) if "_lastUpdated" in params else None
    wanted = set(_ids(params)) if "_id" in params else None
    codes = _tokens(params["code"]) if "code" in params else None
    query = scoped(results_query(id_filter, None), Result.facility, Result.patient_id)
    if wanted is not None:
        # A finding's Observation id is the finding's id; a vital sign's, its vitals row's id and a suffix.
        query = query.where(
            or_(
                Result.id.in_(select(Finding.result_id).where(Finding.id.in_(sorted(wanted)))),
                Result.vitals_id.in_(sorted({one[:36] for one in wanted})),
            )
        )
    # The results are streamed (a batch of rows at a time, each dropped once counted) and only the page's
    # builders are kept: memory holds one batch and one page, however many results the search matches.
    total = 0
    page: list[Builder] = []
    for result in session.scalars(query.execution_options(yield_per=_OBSERVATION_BATCH)):
        if when is not None and not when(*observed_range(result)):
            continue
        # meta.lastUpdated: when the finding's result, or the vital signs, were filed.
        updated = result.vitals.created if result.kind == "triage" and result.vitals else result.created_at
        if filed is not None and not filed(updated, updated):
            continue
        # (the Observation's code's codings, its builder)
        builders: list[tuple[list[dict[str, str]], Builder]] = []
        if result.kind == "imaging" and imaging:
            builders = [
                ([c.finding_coding(f.code, f.display)], partial(r.finding_observation, result, f))
                for f in result.findings
            ]
        if result.kind == "triage" and vital_signs and result.vitals is not None:
            builders = [(o["code"]["coding"], partial(dict, o)) for o in r.vital_observations(result.vitals)]
        for codings, make in builders:
            if codes is not None and not any(_token_matches(codes, coding) for coding in codings):
                continue
            if wanted is not None and make()["id"] not in wanted:
                continue
            if offset <= total < offset + count:
                page.append(make)
            total += 1
    return total, page


#: Internal separator of repeated ``date`` values (``date=ge..&date=le..``) in the single-valued params
#: mapping; ``|`` never occurs in a FHIR date.
DATE_SEPARATOR: Final = "|"


def date_filter(value: str) -> Callable[[datetime, datetime], bool]:
    """A predicate on the ``(start, end)`` a resource's date covers (``end`` excluded; an instant:
    ``start == end``) for a FHIR ``date`` search value (repeats joined by ``DATE_SEPARATOR``).

    FHIR R4 search 3.1.1.4.2: the value is the range its precision implies (a year, a month, a day; a
    dateTime to the minute, second or fraction given), and ``eq`` (or no prefix) matches a resource
    whose range lies within it; ``gt`` one whose range reaches past its end, ``lt`` before its start;
    ``ge`` and ``le`` either that or ``eq``.

    Raises:
        InvalidSearch: A malformed value or prefix.
    """
    checks: list[Callable[[datetime, datetime], bool]] = []
    for part in value.split(DATE_SEPARATOR):
        match = _DATE.match(part)
        if match is None:
            raise InvalidSearch(
                "Search parameter date takes an optional prefix (eq, ge, gt, le, lt) and a date "
                "(YYYY, YYYY-MM or YYYY-MM-DD) or a dateTime with a time zone."
            )
        low, high = search_range(match["value"])
        checks.append(partial(_RANGE_CHECKS[match["prefix"] or "eq"], low, high))
    return lambda start, end: all(check(as_utc(start), as_utc(end)) for check in checks)


def _within(low: datetime, high: datetime, start: datetime, end: datetime) -> bool:
    # An instant (start == end) is within [low, high) when low <= it < high.
    return low <= start and (end < high if start == end else end <= high)


def _after(low: datetime, high: datetime, start: datetime, end: datetime) -> bool:
    return end >= high if start == end else end > high


def _before(low: datetime, high: datetime, start: datetime, end: datetime) -> bool:
    return start < low


_RANGE_CHECKS: Final[dict[str, Callable[[datetime, datetime, datetime, datetime], bool]]] = {
    "eq": _within,
    "gt": _after,
    "lt": _before,
    "ge": lambda *a: _after(*a) or _within(*a),
    "le": lambda *a: _before(*a) or _within(*a),
}


def _study_day(study: Study) -> tuple[datetime, datetime] | None:
    """The UTC day an ImagingStudy ``started`` (its study date), else None (a study sent without one)."""
    started = fhir_date(study.study_date)
    if not started:
        return None
    try:
        return _day_bounds(started)
    except InvalidSearch:
        return None


def observed_range(result: Result) -> tuple[datetime, datetime]:
    """``(start, end)`` of the time the resources of ``result`` are about (``end`` excluded): the vital
    signs' instant, the study date's whole day, or the instant it was filed (``start == end``)."""
    if result.kind == "imaging" and result.study is not None and result.study.study_date:
        try:
            return _day_bounds(result.study.study_date)
        except InvalidSearch:
            pass
    moment = observed(result)
    return moment, moment


def observed(result: Result) -> datetime:
    """The instant an Observation of ``result`` is about: the vital signs' time, the study date, or filing."""
    if result.kind == "triage" and result.vitals is not None:
        return result.vitals.observed_at
    if result.study is not None and result.study.study_date:
        try:
            return datetime.fromisoformat(result.study.study_date).replace(tzinfo=UTC)
        except ValueError:
            pass
    return result.created_at


def int_param(params: Mapping[str, str], name: str, default: int, high: int) -> int:
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


_OLDEST_OPEN: Final = text(
    "SELECT min(xact_start) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
)


def read_from(session: Session) -> datetime:
    """The instant a read in ``session`` reads the record from: a Bundle's ``timestamp``, from which a
    client resumes (``_lastUpdated=ge``, ``_since``) and must miss nothing. Call it before the read's first
    query (after the audit head is locked, where it is).

    A filing stamps its rows (``updated``, a result's ``created_at``) when it writes them and commits
    later; a read in between does not see them. On SQLite an audited read waits for the one writer, so
    now will do. On PostgreSQL a filing runs beside the read: the instant is no later than the start of
    the oldest other transaction open on the database, which precedes its stamps (a filing stamps after
    its first statement). A long transaction (a dump) holds it back: a resuming client gets some changes
    twice, never loses one.
    """
    now = utcnow()
    if session.get_bind().dialect.name != "postgresql":
        return now
    oldest = session.execute(_OLDEST_OPEN).scalar()
    return now if oldest is None else min(now, as_utc(oldest))


def search(
    session: Session,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
    scope: Scope | None = None,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of ``resource_type`` matching ``params``; ``total`` counts every match the
    caller may read (``scope``), and ``_count=0`` answers the total alone, without a ``next`` link.

    ``params`` are the query's ``(name, value)`` pairs (or a mapping). Unsupported parameters are ignored
    and left out of the ``self`` link unless ``strict`` (``Prefer: handling=strict``).

    Raises:
        InvalidSearch: Unknown type; an unsupported parameter when ``strict``; a bad value.
    """
    # The Bundle's timestamp, taken before the first query (see ``r.searchset`` and ``read_from``): on
    # PostgreSQL each statement reads what was committed when it starts, on SQLite the transaction what was
    # committed at its first statement (an audited search holds the write lock from its start).
    moment = read_from(session)
    if resource_type not in SEARCH_PARAMS:
        raise InvalidSearch(
            f"Resource type {resource_type!r} is not served; "
            f"supported types are {', '.join(SUPPORTED_TYPES)}."
        )
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    _refuse_modifiers(resource_type, pairs)
    repeated = {
        "date": DATE_SEPARATOR,
        "birthdate": DATE_SEPARATOR,
        "_lastUpdated": DATE_SEPARATOR,
        **dict.fromkeys(_NAME_PARAMS, _AND),
    }
    kept = applied(
        resource_type,
        pairs,
        set(SEARCH_PARAMS[resource_type]) | COMMON_PARAMS,
        strict=strict,
        repeatable=frozenset(repeated),
    )
    joined: dict[str, str] = {name: value for name, value in kept if name not in repeated}
    for name, separator in repeated.items():
        values = [value for key, value in kept if key == name]
        if values:  # each repeat narrows the search (FHIR: repeated parameters are joined by AND)
            joined[name] = separator.join(values)
    params = subject_as_patient(joined, base_url)
    count = page_size(params.get("_count"), DEFAULT_COUNT, MAX_COUNT, summary=params.get("_summary"))
    offset = int_param(params, "_offset", 0, 10**9)
    base = base_url.rstrip("/")
    total, builders = _matches(session, resource_type, params, scope, offset, count)
    page = [build() for build in builders]
    # The self link shows what was applied (FHIR R4 search 3.1.1.3.2): ignored parameters are left out.
    query = with_count([(k, v) for k, v in kept if k != "_format"], count)
    return r.searchset(
        base, resource_type, query, page, total=total, offset=offset, count=count, timestamp=moment
    )
