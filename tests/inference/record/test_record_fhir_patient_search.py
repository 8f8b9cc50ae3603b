"""FHIR Patient search by demographics (``name``, ``family``, ``given``, ``birthdate``, ``gender``) on both
backends. Before, these parameters were not supported and a lenient search ignored them: an integrator
matching a patient arriving without an identifier got every patient the caller may read, the first of
which is not the one looked for.

Synthetic names only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from _record_data import migrate, patient, triage
from sqlalchemy import text

from inference.record import InvalidSearch, Record

BASE = "http://testserver/fhir"


def _ids(record: Record, **params: str) -> set[str]:
    bundle: dict[str, Any] = record.fhir.search(resource_type="Patient", params=params, base_url=BASE)
    assert bundle["total"] == len(bundle.get("entry", []))
    return {entry["resource"]["identifier"][0]["value"] for entry in bundle.get("entry", [])}


@pytest.fixture
def patients(record: Record) -> Record:
    people = [
        ("P-1", "BENALI^KHADIJA^AMINA", "1950-02-01", "F"),
        ("P-2", "Benaissa^Youssef", "1962-07-15", "male"),
        ("P-3", "Élodie Martin", "1950-02-20", "female"),  # free text (sent as JSON): no family part
        ("P-4", "ALAMI^MOHAMED", "1988-11-30", "O"),
        ("P-5", "بنعلي^خديجة", "2001-01-01", None),
        ("P-6", None, None, "X"),
    ]
    for identifier, name, birth, sex in people:
        record.results.save_triage(data=triage(pat=patient(identifier, name=name, birth_date=birth, sex=sex)))
    return record


def test_names_match_any_word_by_its_start_case_and_accents_ignored(patients: Record) -> None:
    assert _ids(patients, name="ben") == {"P-1", "P-2"}
    assert _ids(patients, name="khadija") == {"P-1"}
    assert _ids(patients, name="elodie") == {"P-3"} == _ids(patients, name="ÉLO")
    # Several words: each starts a word of the name, in any order (DICOM shows the family name first).
    assert _ids(patients, name="benali khadija") == {"P-1"} == _ids(patients, name="khadija benali")
    assert _ids(patients, name="khadija youssef") == set()
    assert _ids(patients, name="khadija amina") == {"P-1"}
    assert _ids(patients, name="martin,alami") == {"P-3", "P-4"}  # comma: any of them
    assert _ids(patients, name="بنعلي") == {"P-5"}
    assert _ids(patients, name="ali") == set()  # a word's start, not inside a word


def test_family_and_given_parts_and_repeats_narrow(patients: Record) -> None:
    assert _ids(patients, family="benali") == {"P-1"}
    assert _ids(patients, family="khadija") == set()
    assert _ids(patients, given="amina") == {"P-1"}  # a middle name is a given name
    assert _ids(patients, family="martin") == set()  # free text has no family part; name= finds it
    both = patients.fhir.search(
        resource_type="Patient", params=[("name", "ben"), ("name", "youssef")], base_url=BASE
    )
    assert [e["resource"]["identifier"][0]["value"] for e in both["entry"]] == ["P-2"]


def test_birthdate_and_gender(patients: Record) -> None:
    assert _ids(patients, birthdate="1950-02-01") == {"P-1"}
    assert _ids(patients, birthdate="1950-02") == {"P-1", "P-3"}
    assert _ids(patients, birthdate="1950") == {"P-1", "P-3"}
    assert _ids(patients, birthdate="ge1988") == {"P-4", "P-5"}
    assert _ids(patients, birthdate="lt1962-07-15") == {"P-1", "P-3"}
    assert _ids(patients, birthdate="le1962-07-15") == {"P-1", "P-2", "P-3"}
    assert _ids(patients, birthdate="gt1988-11-30") == {"P-5"}
    ranged = patients.fhir.search(
        resource_type="Patient", params=[("birthdate", "ge1950"), ("birthdate", "lt1960")], base_url=BASE
    )
    assert {e["resource"]["identifier"][0]["value"] for e in ranged["entry"]} == {"P-1", "P-3"}
    assert _ids(patients, gender="female") == {"P-1", "P-3"}
    assert _ids(patients, gender="http://hl7.org/fhir/administrative-gender|male") == {"P-2"}
    assert _ids(patients, gender="other,unknown") == {"P-4", "P-6"}
    assert _ids(patients, gender="female", birthdate="1950-02-20") == {"P-3"}
    for bad in ({"birthdate": "1950-13"}, {"birthdate": "1950-02-01T10:00:00Z"}, {"name": "--"}):
        with pytest.raises(InvalidSearch):
            patients.fhir.search(resource_type="Patient", params=bad, base_url=BASE)


def test_the_capability_statement_declares_them(record: Record) -> None:
    statement = record.fhir.capability_statement(base_url=BASE)
    patient_type = next(t for t in statement["rest"][0]["resource"] if t["type"] == "Patient")
    declared = {p["name"]: p["type"] for p in patient_type["searchParam"]}
    assert declared["name"] == declared["family"] == declared["given"] == "string"
    assert declared["birthdate"] == "date" and declared["gender"] == "token"


def test_patients_on_file_before_the_migration_are_found(record: Record) -> None:
    migrate(record, "0019")
    with record.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO patients (id, identifier, issuer, name, facility, created) "
                "VALUES ('old-1', 'P-OLD', 'CHU-NORD', 'Tazi^Rachid', 'north', :at)"
            ),
            {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
        # More patients than the migration fills in one batch (1000): the last ones too are found.
        connection.execute(
            text(
                "INSERT INTO patients (id, identifier, issuer, name, facility, created) "
                "VALUES (:id, :identifier, 'CHU-NORD', :name, 'north', :at)"
            ),
            [
                {
                    "id": f"old-{n:05d}",
                    "identifier": f"P-{n}",
                    "name": f"Filali{n}^Amina",
                    "at": datetime(2026, 1, 1, tzinfo=UTC),
                }
                for n in range(2, 1203)
            ],
        )
    migrate(record, "head")
    assert _ids(record, family="tazi") == {"P-OLD"}
    assert _ids(record, name="rach") == {"P-OLD"}
    assert _ids(record, family="filali1202") == {"P-1202"}
    assert _ids(record, family="filali1001") == {"P-1001"}
