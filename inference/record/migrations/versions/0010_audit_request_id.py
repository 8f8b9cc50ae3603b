"""Audit entries name the HTTP request that made them.

``audit_events.request_id`` holds the request's ``X-Request-ID`` (the caller's, or the one the server
generated), so an entry of the trail, the answer the client received and the server's log lines of the
same request can be put side by side. Entries made outside a request (the DIMSE listener, the outbox
worker, operator commands) have none. The entry's hash covers the id when there is one, so entries
written before this revision keep their hashes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no table copy): the append-only triggers of audit_events stay as they are.
    op.add_column("audit_events", sa.Column("request_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("request_id")
