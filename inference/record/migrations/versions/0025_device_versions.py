"""``devices.version`` and ``devices.updated``: the version of a Device (a model version) and when the record
last changed what it says (FHIR ``meta.versionId`` and ``meta.lastUpdated``, a read's ``ETag`` and
``Last-Modified``, ``vread``, ``_lastUpdated``).

A Device is version 1 when filed, and one more when the record completes it: a device whose results never
said what its model was trained on (migration 0022 left it empty) is given it from the model file when
that version is put into service, and keeps it once the version leaves service. Before, such a Device said
it only while its version was served, read at each read and version 1 throughout, so a client caching by
ETag never saw it appear or go. Rows on file become version 1 as of their filing (what they said was
always served as that): no earlier version was kept, so none can be read, and a client's cached ``W/"1"``
stays valid. PostgreSQL keeps ``updated`` NOT NULL; SQLite cannot add that in place (``devices`` is
referenced by ``results``), and a server version older than this one, still running beside a newer one
during an upgrade, files devices there without it (the Device then says when it was filed).

Downgrading drops the two columns.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NOT NULL with a default: SQLite adds it in place, and every row on file is version 1.
    op.add_column("devices", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("devices", sa.Column("updated", UTCDateTime()))
    op.execute("UPDATE devices SET updated = created")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("devices", "updated", nullable=False)


def downgrade() -> None:
    # SQLite drops a column in place since 3.35: the table, its rows and what refers to it stay.
    op.drop_column("devices", "updated")
    op.drop_column("devices", "version")
