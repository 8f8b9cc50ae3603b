"""PostgreSQL: ``TRUNCATE`` of the audit trail refused, as ``UPDATE`` and ``DELETE`` already are.

Row triggers (migrations 0001, 0003, 0006) keep ``audit_events`` append-only and ``audit_chain_head``
moving forward, but ``TRUNCATE`` fires no row trigger: whoever could write the tables could empty the
trail in one statement (the anchor file would notice, at the next ``audit verify``). A statement trigger
refuses it now. SQLite has no ``TRUNCATE`` (its ``DELETE`` triggers already refuse).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("audit_events", "audit_chain_head")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION audit_no_truncate() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    for table in _TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS audit_no_truncate()")
