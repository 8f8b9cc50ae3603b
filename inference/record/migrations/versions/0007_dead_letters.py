"""Dead letters: the outbox's terminal ``dead`` state with an error code, and the output-build queue.

An outbox row that the destination refused, or that ran out of attempts, is ``dead`` (rows marked
``failed`` before this revision become ``dead`` with code ``destination_refused``), until an operator
retries it. ``output_builds`` holds a result whose DICOM outputs could not be built: retried with backoff,
then ``dead``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", recreate="always") as batch:
        batch.drop_constraint("ck_outbox_state", type_="check")
        batch.add_column(sa.Column("error_code", sa.String(32)))
        batch.add_column(sa.Column("dead_at", UTCDateTime()))
    op.execute(
        "UPDATE outbox SET state = 'dead', error_code = 'destination_refused', dead_at = next_attempt_at "
        "WHERE state = 'failed'"
    )
    with op.batch_alter_table("outbox") as batch:
        batch.create_check_constraint("ck_outbox_state", "state IN ('pending', 'sent', 'dead')")
    op.create_table(
        "output_builds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("destinations", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("error_code", sa.String(32)),
        sa.Column("last_error", sa.String(512)),
        sa.Column("spool", sa.String(255)),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("dead_at", UTCDateTime()),
        sa.UniqueConstraint("result_id", name="uq_output_builds_result"),
        sa.CheckConstraint("state IN ('pending', 'done', 'dead')", name="ck_output_builds_state"),
        sa.CheckConstraint("attempts >= 0", name="ck_output_builds_attempts"),
    )
    op.create_index("ix_output_builds_state", "output_builds", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_output_builds_state", table_name="output_builds")
    op.drop_table("output_builds")
    with op.batch_alter_table("outbox", recreate="always") as batch:
        batch.drop_constraint("ck_outbox_state", type_="check")
    op.execute("UPDATE outbox SET state = 'failed' WHERE state = 'dead'")
    with op.batch_alter_table("outbox", recreate="always") as batch:
        batch.drop_column("dead_at")
        batch.drop_column("error_code")
        batch.create_check_constraint("ck_outbox_state", "state IN ('pending', 'sent', 'failed')")
