"""The outbox's terminal ``withheld`` state: a delivery the patient's objection stopped.

An object whose patient objected (to national sharing or to AI processing) after it was queued is never
sent. It was ended in the dead-letter state (``dead``, code ``consent_withdrawn``), so it showed among
the dead letters an operator is asked to look at and to retry; it is the intended outcome, not a failure.
Such rows become ``withheld`` (same code), which no retry hands back.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", recreate="always") as batch:
        batch.drop_constraint("ck_outbox_state", type_="check")
    op.execute(
        "UPDATE outbox SET state = 'withheld' WHERE state = 'dead' AND error_code = 'consent_withdrawn'"
    )
    with op.batch_alter_table("outbox") as batch:
        batch.create_check_constraint("ck_outbox_state", "state IN ('pending', 'sent', 'dead', 'withheld')")


def downgrade() -> None:
    with op.batch_alter_table("outbox", recreate="always") as batch:
        batch.drop_constraint("ck_outbox_state", type_="check")
    op.execute("UPDATE outbox SET state = 'dead' WHERE state = 'withheld'")
    with op.batch_alter_table("outbox") as batch:
        batch.create_check_constraint("ck_outbox_state", "state IN ('pending', 'sent', 'dead')")
