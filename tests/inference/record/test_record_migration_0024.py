"""Migration 0024 on both backends: ``patients.version`` and ``studies.version`` count the changes of what
a Patient and an ImagingStudy show (FHIR ``meta.versionId``): 1 when filed, one more each time the record
completes them (once per filing), none when a filing changes nothing they show. The downgrade to 0023 drops
the columns; the upgrade gives every row on file version 1 (the record kept no earlier version), and a row
an older server version files meanwhile is version 1 too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from _record_data import imaging, migrate, patient, replace, triage, uid

from inference.record import Record
from inference.record._types import UTCDateTime

FILED = datetime(2026, 2, 3, 10, 15, tzinfo=UTC)
BASE = "http://127.0.0.1:8000/fhir"


def _columns(record: Record) -> dict[str, bool]:
    inspector = sa.inspect(record.engine)
    return {
        table: any(c["name"] == "version" for c in inspector.get_columns(table))
        for table in ("patients", "studies")
    }


def _version(record: Record, resource_type: str, resource_id: str) -> str:
    resource = record.fhir.read(resource_type=resource_type, resource_id=resource_id)
    assert resource is not None
    return str(resource["meta"]["versionId"])


def _study_id(record: Record, patient_id: str) -> str:
    bundle = record.fhir.search(resource_type="ImagingStudy", params={"patient": patient_id}, base_url=BASE)
    [entry] = bundle["entry"]
    return str(entry["resource"]["id"])


def test_versions_count_changes_and_survive_a_downgrade_and_upgrade(record: Record) -> None:
    study_uid = uid()
    bare = imaging(pat=patient("IPP-V24", name=None, birth_date=None), study_uid=study_uid)
    first = record.results.save_imaging(data=replace(bare, accession_number=None, study_date=None))
    patient_id = first.patient_id
    study_id = _study_id(record, patient_id)
    assert _columns(record) == {"patients": True, "studies": True}
    assert (_version(record, "Patient", patient_id), _version(record, "ImagingStudy", study_id)) == ("1", "1")
    # Vital signs change nothing the Patient shows.
    record.results.save_triage(data=triage(pat=patient("IPP-V24", name=None, birth_date=None)))
    assert _version(record, "Patient", patient_id) == "1"
    # One filing that fills in the name and the birth date, and the study's accession, date and more
    # instances: one version more each.
    record.results.save_imaging(data=imaging(pat=patient("IPP-V24"), study_uid=study_uid))
    assert (_version(record, "Patient", patient_id), _version(record, "ImagingStudy", study_id)) == ("2", "2")

    migrate(record, "0023")
    assert _columns(record) == {"patients": False, "studies": False}
    # An older server version files a patient while versions are mixed: it writes no version.
    old_id = str(uuid.uuid4())
    patients = sa.table(
        "patients",
        sa.column("id", sa.String),
        sa.column("identifier", sa.String),
        sa.column("issuer", sa.String),
        sa.column("created", UTCDateTime()),
        sa.column("updated", UTCDateTime()),
    )
    with record.engine.begin() as connection:
        connection.execute(
            patients.insert().values(
                id=old_id, identifier="IPP-V24-OLD", issuer="", created=FILED, updated=FILED
            )
        )
    migrate(record, "head")
    # And once upgraded (the same older version, still running beside a newer one).
    mixed_id = str(uuid.uuid4())
    with record.engine.begin() as connection:
        connection.execute(
            patients.insert().values(
                id=mixed_id, identifier="IPP-V24-MIX", issuer="", created=FILED, updated=FILED
            )
        )
    assert _columns(record) == {"patients": True, "studies": True}
    assert (_version(record, "Patient", patient_id), _version(record, "ImagingStudy", study_id)) == ("1", "1")
    assert _version(record, "Patient", old_id) == _version(record, "Patient", mixed_id) == "1"
    record.results.save_imaging(data=imaging(pat=patient("IPP-V24"), study_uid=study_uid))
    assert _version(record, "ImagingStudy", study_id) == "2"
