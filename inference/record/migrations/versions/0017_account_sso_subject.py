"""The identity-provider subject an account is bound to: the issuer and ``sub`` of its single sign-on.

The ID token's username claim (``preferred_username``) is neither unique nor stable at the provider
(OpenID Connect Core 5.7): a recycled or renamed username would sign in as another person's account. An
account now keeps the ``(iss, sub)`` pair of its first single sign-on (or the one given at provisioning,
``dxassist user add --sso-subject``); an ID token naming another pair is refused. One pair binds one
account at most. Existing accounts start unbound (their next single sign-on binds them).

Downgrading drops the binding: the accounts sign in by username alone again.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _keeping_sessions(rebuild: Callable[[], None]) -> None:
    # SQLite rebuilds user_accounts (copy, drop, rename): with foreign keys on, dropping it while sessions
    # point at it fails the migration of a record in use. The sessions wait in a temporary table meanwhile
    # (PostgreSQL alters the table in place).
    if op.get_bind().dialect.name != "sqlite":
        rebuild()
        return
    op.execute("CREATE TEMP TABLE _web_sessions_0017 AS SELECT * FROM web_sessions")
    op.execute("DELETE FROM web_sessions")
    rebuild()
    op.execute("INSERT INTO web_sessions SELECT * FROM _web_sessions_0017")
    op.execute("DROP TABLE _web_sessions_0017")


def _upgrade() -> None:
    with op.batch_alter_table("user_accounts") as batch:
        batch.add_column(sa.Column("sso_issuer", sa.String(2048)))
        batch.add_column(sa.Column("sso_subject", sa.String(255)))
        batch.create_check_constraint(
            "ck_user_accounts_sso_pair", "(sso_issuer IS NULL) = (sso_subject IS NULL)"
        )


def _downgrade() -> None:
    with op.batch_alter_table("user_accounts") as batch:
        batch.drop_constraint("ck_user_accounts_sso_pair", type_="check")
        batch.drop_column("sso_subject")
        batch.drop_column("sso_issuer")


def upgrade() -> None:
    _keeping_sessions(_upgrade)
    op.create_index("ux_user_accounts_sso", "user_accounts", ["sso_subject", "sso_issuer"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_user_accounts_sso", table_name="user_accounts")
    _keeping_sessions(_downgrade)
