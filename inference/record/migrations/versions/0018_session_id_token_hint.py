"""The ID token of a session opened by single sign-on, kept as the ``id_token_hint`` of its sign-out.

OpenID Connect RP-Initiated Logout 1.0: signing out of the pages sends the browser on to the identity
provider's end-session endpoint, which wants the ID token it issued as a hint of whom to sign out. The
token lives with its session only (a sign-out, an expiry or a disabled account deletes the row); a
password session has none.

Downgrading drops the column: those sessions then sign out of the pages only, as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("id_token_hint", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("id_token_hint")
