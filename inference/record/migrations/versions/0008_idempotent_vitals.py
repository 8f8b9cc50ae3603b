"""Idempotent vital signs: a triage result remembers the request it answered.

``idempotency_key`` is the sha256 of the sender and the ``Idempotency-Key`` header it sent (unique, so
the same key from the same sender files one result); ``request_digest`` is the sha256 of the request's
content, to tell a retry (same content) from a key reused for other content; ``observation_key`` is the
sha256 of the sender, the patient, the observation time and the values (unique, so an exact duplicate
sent without a key files one result).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(64)))
        batch.add_column(sa.Column("request_digest", sa.String(64)))
        batch.add_column(sa.Column("observation_key", sa.String(64)))
        batch.create_unique_constraint("uq_results_idempotency_key", ["idempotency_key"])
        batch.create_unique_constraint("uq_results_observation_key", ["observation_key"])


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint("uq_results_observation_key", type_="unique")
        batch.drop_constraint("uq_results_idempotency_key", type_="unique")
        batch.drop_column("observation_key")
        batch.drop_column("request_digest")
        batch.drop_column("idempotency_key")
