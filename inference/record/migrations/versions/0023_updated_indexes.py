"""``patients.updated`` and ``studies.updated`` indexed: a ``_lastUpdated`` search of Patients or
ImagingStudies (and a client syncing with it) read every row of the table before.

Rows an older server version filed into a SQLite record after 0022 (during an upgrade, while versions are
mixed: it writes no ``updated``) are given their filing time, what their FHIR ``meta.lastUpdated`` already
says. PostgreSQL keeps the columns NOT NULL: it has none.

Downgrading drops the two indexes.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {"patients": "ix_patients_updated", "studies": "ix_studies_updated"}


def upgrade() -> None:
    for table, index in _INDEXES.items():
        op.execute(f"UPDATE {table} SET updated = created WHERE updated IS NULL")
        op.create_index(index, table, ["updated"])


def downgrade() -> None:
    for table, index in _INDEXES.items():
        op.drop_index(index, table_name=table)
