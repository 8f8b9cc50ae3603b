"""During an upgrade an older server version may still write to a migrated SQLite record: it files
patients and studies without ``updated`` (migration 0022's column, NULL-able on SQLite). Such a Patient
and ImagingStudy still say when they last changed (``meta.lastUpdated``: when they were filed) and are
found by ``_lastUpdated`` and ``$everything``'s ``_since`` by that time, as every other row is.

SQLite only: PostgreSQL keeps the column NOT NULL, so an older writer cannot leave it empty there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from _record_data import uid

from inference.record import Record
from inference.record._types import UTCDateTime

BASE = "http://127.0.0.1:8000/fhir"
FILED = datetime(2026, 2, 3, 10, 15, tzinfo=UTC)

# The columns a server of before migration 0022 writes: no ``updated``.
_PATIENTS = sa.table(
    "patients",
    sa.column("id", sa.String),
    sa.column("identifier", sa.String),
    sa.column("issuer", sa.String),
    sa.column("facility", sa.String),
    sa.column("created", UTCDateTime()),
)
_STUDIES = sa.table(
    "studies",
    sa.column("id", sa.String),
    sa.column("study_instance_uid", sa.String),
    sa.column("patient_id", sa.String),
    sa.column("facility", sa.String),
    sa.column("created", UTCDateTime()),
)


@pytest.fixture
def sqlite_record(tmp_path: Path) -> Iterator[Record]:
    record = Record(f"sqlite:///{tmp_path / 'record.db'}")
    record.migrate()
    try:
        yield record
    finally:
        record.close()


def _filed_by_an_older_server(record: Record) -> tuple[str, str]:
    patient_id, study_id = str(uuid.uuid4()), str(uuid.uuid4())
    with record.engine.begin() as connection:
        connection.execute(
            _PATIENTS.insert().values(
                id=patient_id, identifier="IPP-OLD-1", issuer="", facility=None, created=FILED
            )
        )
        connection.execute(
            _STUDIES.insert().values(
                id=study_id, study_instance_uid=uid(), patient_id=patient_id, facility=None, created=FILED
            )
        )
    return patient_id, study_id


def _found(record: Record, resource_type: str, **params: str) -> set[str]:
    bundle = record.fhir.search(resource_type=resource_type, params=params, base_url=BASE)
    return {entry["resource"]["id"] for entry in bundle["entry"]}


def test_rows_an_older_server_filed_say_when_and_are_found(sqlite_record: Record) -> None:
    record = sqlite_record
    patient_id, study_id = _filed_by_an_older_server(record)

    for resource_type, resource_id in (("Patient", patient_id), ("ImagingStudy", study_id)):
        resource = record.fhir.read(resource_type=resource_type, resource_id=resource_id)
        assert resource is not None
        assert resource["meta"]["lastUpdated"] == "2026-02-03T10:15:00.000Z", resource_type

    for resource_type, resource_id in (("Patient", patient_id), ("ImagingStudy", study_id)):
        assert _found(record, resource_type, _lastUpdated="2026-02-03") == {resource_id}, resource_type
        assert _found(record, resource_type, _lastUpdated="ge2026-02") == {resource_id}, resource_type
        assert _found(record, resource_type, _lastUpdated="lt2026-02-03T10:15:00Z") == set(), resource_type
        assert _found(record, resource_type, _lastUpdated="gt2026-02-03") == set(), resource_type

    def since(instant: str) -> set[str]:
        bundle = record.fhir.everything(patient_id=patient_id, params={"_since": instant}, base_url=BASE)
        assert bundle is not None
        return {e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "match"}

    assert since("2026-02-03T10:00:00Z") == {"Patient", "ImagingStudy"}
    assert since("2026-02-03T11:00:00Z") == set()
