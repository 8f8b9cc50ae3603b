"""A result keeps the patient's age and sex as its own facility sent them.

The patient row holds the demographics of the facility that filed the patient first and never another
facility's. A facility that files a study of that patient reads its own result, not the patient (unless
the patient consented to sharing between facilities or a grant opens it), so its worklist showed no age
and no sex, although it sent both. ``results.patient_age`` (whole years when filed) and
``results.patient_sex`` keep what the result's sender sent; results filed before stay empty (what their
senders sent was not kept).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("results", sa.Column("patient_age", sa.Integer()))
    op.add_column("results", sa.Column("patient_sex", sa.String(16)))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35: the table, its rows and what refers to it stay.
    op.drop_column("results", "patient_sex")
    op.drop_column("results", "patient_age")
