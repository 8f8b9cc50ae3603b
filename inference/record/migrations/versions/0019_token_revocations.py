"""Revoked bearer tokens: one token by its id (``jti``), or every token of a subject issued up to a moment.

``dxassist token revoke`` writes a row (with its audit entry); the server reads the table every few
seconds and refuses the tokens it names. Downgrading drops the table: the revocations are then lost and
the tokens they named work again until they expire (replace the signing key to stop them all).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_revocations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("jti", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("issued_until", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.CheckConstraint("(jti IS NULL) <> (subject IS NULL)", name="ck_token_revocations_one_target"),
    )
    op.create_index("ix_token_revocations_jti", "token_revocations", ["jti"])
    op.create_index("ix_token_revocations_subject", "token_revocations", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_token_revocations_subject", table_name="token_revocations")
    op.drop_index("ix_token_revocations_jti", table_name="token_revocations")
    op.drop_table("token_revocations")
