"""Received DIMSE studies in the record, so that several listener instances group and claim them together.

One row per study folder of the listener's spool (shared storage between instances): the generation and
time (database clock) of its last arrival, the earliest time of its next try after a failure, the failed
attempts, and the instance holding it with its lease. Used when ``DXASSIST_DIMSE_GROUPING=database``; a
single listener with the default settings keeps its grouping state in memory and never writes here.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dimse_studies",
        sa.Column("study_key", sa.String(80), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("last_arrival", UTCDateTime(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_generation", sa.Integer(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_dimse_studies_last_arrival", "dimse_studies", ["last_arrival"])


def downgrade() -> None:
    op.drop_index("ix_dimse_studies_last_arrival", table_name="dimse_studies")
    op.drop_table("dimse_studies")
