"""Patient and ImagingStudy change over time (a demographic filled in, a study's later instances): their
``meta.lastUpdated`` says when the record last changed them, ``_lastUpdated`` finds them by it, and
``$everything``'s ``_since`` hands a syncing integrator what changed, on both backends.

The first filing is moved back to January (as if filed then) so that "changed since" needs no clock."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from _record_data import imaging, patient, triage, uid
from sqlalchemy import update

from inference.record import InvalidSearch, Record
from inference.record._models import Patient, Result, Study
from inference.record._types import iso, utcnow

BASE = "http://127.0.0.1:8000/fhir"
JANUARY = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def _valid(resource: dict[str, Any]) -> dict[str, Any]:
    name = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{name.lower()}")
    getattr(module, name).model_validate(resource)
    return resource


def _read(record: Record, resource_type: str, resource_id: str) -> dict[str, Any]:
    resource = record.fhir.read(resource_type=resource_type, resource_id=resource_id)
    assert resource is not None
    return _valid(resource)


def _found(record: Record, resource_type: str, **params: str) -> set[str]:
    bundle = record.fhir.search(resource_type=resource_type, params=params, base_url=BASE)
    _valid(bundle)
    return {entry["resource"]["id"] for entry in bundle["entry"]}


def _filed_in_january(record: Record) -> None:
    with record.engine.begin() as connection:
        for table in (Patient, Study):
            connection.execute(update(table).values(created=JANUARY, updated=JANUARY))


def _study_id(record: Record, patient_id: str) -> str:
    bundle = record.fhir.search(resource_type="ImagingStudy", params={"patient": patient_id}, base_url=BASE)
    [entry] = bundle["entry"]
    return str(entry["resource"]["id"])


def test_a_patient_and_a_study_say_when_they_last_changed(record: Record) -> None:
    study_uid = uid()
    # The first facility knows the identifier only; the name comes with its next study.
    first = record.results.save_imaging(
        data=imaging(pat=patient("IPP-LU-1", name=None, birth_date=None), study_uid=study_uid)
    )
    other = record.results.save_triage(data=triage(pat=patient("IPP-LU-2")))
    _filed_in_january(record)
    patient_id, study_id = first.patient_id, _study_id(record, first.patient_id)
    assert _read(record, "Patient", patient_id)["meta"]["lastUpdated"] == "2026-01-05T09:30:00.000Z"
    assert _read(record, "ImagingStudy", study_id)["meta"]["lastUpdated"] == "2026-01-05T09:30:00.000Z"
    assert _found(record, "Patient", _lastUpdated="2026-01-05") == {patient_id, other.patient_id}
    assert _found(record, "ImagingStudy", _lastUpdated="2026-01") == {study_id}

    before = iso(utcnow())
    # Nothing the Patient or the ImagingStudy shows changes: vital signs, another facility's other name.
    record.results.save_triage(data=triage(pat=patient("IPP-LU-1", name=None, birth_date=None)))
    record.results.save_triage(data=triage(pat=patient("IPP-LU-1", name="Other^Name", facility="south")))
    assert _read(record, "Patient", patient_id)["meta"]["lastUpdated"] == "2026-01-05T09:30:00.000Z"
    assert _found(record, "Patient", _lastUpdated=f"ge{before}") == set()
    # The same facility sends the name, and a later image of the same study.
    record.results.save_imaging(
        data=imaging(pat=patient("IPP-LU-1", name="Tazi^Rachid", birth_date=None), study_uid=study_uid)
    )
    changed = _read(record, "Patient", patient_id)
    assert changed["name"][0]["family"] == "Tazi"
    assert changed["meta"]["lastUpdated"] >= before
    grown = _read(record, "ImagingStudy", study_id)
    assert grown["numberOfInstances"] == 4 and grown["meta"]["lastUpdated"] >= before
    assert _found(record, "Patient", _lastUpdated=f"ge{before}") == {patient_id}
    assert _found(record, "Patient", _lastUpdated=f"lt{before}") == {other.patient_id}
    assert _found(record, "ImagingStudy", _lastUpdated=f"ge{before}") == {study_id}
    assert _found(record, "ImagingStudy", _lastUpdated="2026-01") == set()


def test_everything_since_hands_over_what_changed(record: Record) -> None:
    study_uid = uid()
    first = record.results.save_imaging(
        data=imaging(pat=patient("IPP-LU-3", name=None, birth_date=None), study_uid=study_uid)
    )
    _filed_in_january(record)
    with record.engine.begin() as connection:
        connection.execute(update(Result).values(created_at=JANUARY))
    since = iso(utcnow())

    def changed() -> set[str]:
        bundle = record.fhir.everything(patient_id=first.patient_id, params={"_since": since}, base_url=BASE)
        assert bundle is not None
        return {e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "match"}

    assert changed() == set()
    # A later image of the study, with the patient's name: both changed, and the new result is new.
    record.results.save_imaging(
        data=imaging(pat=patient("IPP-LU-3", name="Benali^Khadija", birth_date=None), study_uid=study_uid)
    )
    assert changed() == {"Patient", "ImagingStudy", "DiagnosticReport", "Observation", "Provenance"}


def test_the_capability_statement_declares_last_updated_on_them(record: Record) -> None:
    statement = record.fhir.capability_statement(base_url=BASE)
    types = {t["type"]: t for t in statement["rest"][0]["resource"]}
    for name in ("Patient", "ImagingStudy"):
        declared = {p["name"]: p["type"] for p in types[name]["searchParam"]}
        assert declared["_lastUpdated"] == "date", name


def test_everything_since_pages_the_same_whatever_changes_between_pages(record: Record) -> None:
    study_uid = uid()
    first = record.results.save_imaging(
        data=imaging(pat=patient("IPP-LU-4", name=None, birth_date=None), study_uid=study_uid)
    )
    _filed_in_january(record)
    with record.engine.begin() as connection:
        connection.execute(update(Result).values(created_at=JANUARY))
    since = iso(utcnow())
    for _ in range(2):  # what changed since: two assessments, their vital signs and Provenances
        record.results.save_triage(data=triage(pat=patient("IPP-LU-4", name=None, birth_date=None)))

    def matches(bundle: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (e["resource"]["resourceType"], e["resource"]["id"])
            for e in bundle["entry"]
            if e["search"]["mode"] == "match"
        ]

    def page(params: list[tuple[str, str]]) -> dict[str, Any]:
        bundle = record.fhir.everything(patient_id=first.patient_id, params=params, base_url=BASE)
        assert bundle is not None
        return bundle

    listed = matches(page([("_since", since), ("_count", "500")]))
    assert len(listed) > 6 and {t for t, _ in listed} == {"RiskAssessment", "Observation", "Provenance"}
    bundle = page([("_since", since), ("_count", "3")])
    paged = matches(bundle)
    # Between the first page and the next: the patient's name and a later image of its January study
    # arrive. The Patient and the ImagingStudy now changed since ``_since`` (they come first in the
    # Bundle): the pages the client still reads must not shift under it.
    record.results.save_imaging(
        data=imaging(pat=patient("IPP-LU-4", name="Synthetic^Person", birth_date=None), study_uid=study_uid)
    )
    while True:
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        bundle = page(parse_qsl(urlsplit(following[0]).query))
        paged += matches(bundle)
    assert paged == listed
    # The next link's ``_after`` names a resource of the record; anything else is refused.
    with pytest.raises(InvalidSearch):
        page([("_since", since), ("_after", "Device/not-of-a-patient")])
