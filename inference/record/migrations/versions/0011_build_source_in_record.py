"""The source header of an output build in the record, so that any replica can build it.

A result's DICOM outputs are built by the process that filed it; when that process dies, the outbox
worker of any other process takes the build over. That other process may run on another host, so the
source header the build needs (``output_builds.source``: the DICOM header and the decoded instance's
fields, no pixels, no pickle) is kept in the row itself instead of a folder on the filing host's disk.
Rows filed before this revision keep their ``spool`` folder.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("output_builds") as batch:
        batch.add_column(sa.Column("source", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("output_builds") as batch:
        batch.drop_column("source")
