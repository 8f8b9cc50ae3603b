"""The outbox: DICOM objects (SR, heatmap captures) waiting to be delivered to PACS destinations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("object_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("last_error", sa.String(512)),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        # Exactly once per destination: enqueuing the same object again is a no-op.
        sa.UniqueConstraint("result_id", "destination", "object_uid", name="uq_outbox_object"),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name="ck_outbox_state"),
        sa.CheckConstraint("kind IN ('sr', 'sc')", name="ck_outbox_kind"),
        sa.CheckConstraint("attempts >= 0", name="ck_outbox_attempts"),
    )
    # The worker reads the oldest pending object of each destination.
    op.create_index("ix_outbox_destination_state", "outbox", ["destination", "state", "id"])
    op.create_index("ix_outbox_result", "outbox", ["result_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_result", table_name="outbox")
    op.drop_index("ix_outbox_destination_state", table_name="outbox")
    op.drop_table("outbox")
