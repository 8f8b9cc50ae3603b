"""``patients.version`` and ``studies.version``: how many times the record has changed what a Patient or an
ImagingStudy shows (FHIR ``meta.versionId``, a read's ``ETag``, ``vread``).

1 when filed, one more in the transaction that completes the row (where ``updated`` is set: a demographic
filled in, a study's later instances, accession or date), once per transaction. The record keeps the
current version only. Rows on file become version 1: no earlier version was kept, so none can be read.
A server version older than this one, still running beside a newer one during an upgrade, files new rows
as version 1 (the column's default) and completes rows without counting (``updated`` still moves, so
``_lastUpdated`` and ``_since`` still bring them).

Downgrading drops the two columns.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("patients", "studies")


def upgrade() -> None:
    for table in _TABLES:
        # NOT NULL with a default: SQLite adds it in place, and every row on file is version 1.
        op.add_column(table, sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35: the table, its rows and what refers to it stay.
    for table in _TABLES:
        op.drop_column(table, "version")
