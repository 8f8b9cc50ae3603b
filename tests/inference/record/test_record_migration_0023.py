"""Migration 0023 on both backends: ``patients.updated`` and ``studies.updated`` are indexed, so that a
``_lastUpdated`` search of Patients or ImagingStudies reads the index instead of every row; the downgrade
to 0022 drops the indexes and the upgrade makes them again. On SQLite, a row an older server version
filed without ``updated`` (between 0022 and an upgrade of every server) is given its filing time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from _record_data import migrate, triage

from inference.record import Record
from inference.record._models import Patient, Study
from inference.record._types import UTCDateTime
from inference.record.fhir._search import changed_within

FILED = datetime(2026, 2, 3, 10, 15, tzinfo=UTC)
_INDEXES = {"patients": "ix_patients_updated", "studies": "ix_studies_updated"}


def _indexes(record: Record) -> dict[str, set[tuple[str, ...]]]:
    inspector = sa.inspect(record.engine)
    return {
        table: {tuple(ix["column_names"]) for ix in inspector.get_indexes(table) if ix["name"] == name}
        for table, name in _INDEXES.items()
    }


def _plan(record: Record, table: type[Patient] | type[Study]) -> str:
    """The plan of the rows a ``_lastUpdated`` search of ``table`` selects."""
    query = sa.select(table.id).where(changed_within(table, "ge2026-02-01"))
    with record.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # The test tables are tiny: a scan would be the cheapest plan whatever the indexes.
            connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
        compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN QUERY PLAN" if connection.dialect.name == "sqlite" else "EXPLAIN"
        return " ".join(str(row[-1]) for row in connection.execute(sa.text(f"{explain} {compiled}")))


def test_updated_is_indexed_and_searches_read_the_index(record: Record) -> None:
    record.results.save_triage(data=triage())
    assert _indexes(record) == {"patients": {("updated",)}, "studies": {("updated",)}}
    for table, name in ((Patient, "ix_patients_updated"), (Study, "ix_studies_updated")):
        assert name in _plan(record, table), table.__tablename__

    migrate(record, "0022")
    assert _indexes(record) == {"patients": set(), "studies": set()}
    old_writer = record.engine.dialect.name == "sqlite"  # PostgreSQL keeps updated NOT NULL
    patient_id = str(uuid.uuid4())
    if old_writer:
        patients = sa.table(
            "patients",
            sa.column("id", sa.String),
            sa.column("identifier", sa.String),
            sa.column("issuer", sa.String),
            sa.column("created", UTCDateTime()),
        )
        with record.engine.begin() as connection:
            connection.execute(
                patients.insert().values(id=patient_id, identifier="IPP-M23", issuer="", created=FILED)
            )
    migrate(record, "head")
    assert _indexes(record) == {"patients": {("updated",)}, "studies": {("updated",)}}
    with record.engine.begin() as connection:
        assert connection.scalar(sa.select(sa.func.count()).where(Patient.updated.is_(None))) == 0
        assert connection.scalar(sa.select(sa.func.count()).where(Study.updated.is_(None))) == 0
        if old_writer:
            assert connection.scalar(sa.select(Patient.updated).where(Patient.id == patient_id)) == FILED
