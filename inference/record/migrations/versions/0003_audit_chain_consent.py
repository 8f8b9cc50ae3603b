"""Hash-chained audit trail (seq, prev_hash, hash, chain head) and patient consent.

Entries written before this revision are chained here, in id order, so the whole trail verifies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._audit import CONTENT_FIELDS, GENESIS, HEAD_ID, entry_hash
from inference.record._types import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENT_COLUMNS = ("id", *(name for name in CONTENT_FIELDS if name not in ("seq", "prev_hash")))


def _chain_existing(dialect: str) -> tuple[int, str]:
    """Give every entry written before this revision its place in the chain; return the head."""
    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        *(sa.column(name) for name in _EVENT_COLUMNS if name != "time"),
        sa.column("time", UTCDateTime()),
        sa.column("seq"),
        sa.column("prev_hash"),
        sa.column("hash"),
    )
    rows = bind.execute(sa.select(*(events.c[name] for name in _EVENT_COLUMNS)).order_by(events.c.id)).all()
    if not rows:
        return 0, GENESIS
    # The append-only triggers refuse this one-time update: lift them for it, then put them back.
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
    seq, prev = 0, GENESIS
    for row in rows:
        seq += 1
        content = {**row._asdict(), "seq": seq, "prev_hash": prev}
        digest = entry_hash(content)
        bind.execute(
            sa.update(events).where(events.c.id == row.id).values(seq=seq, prev_hash=prev, hash=digest)
        )
        prev = digest
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change")
    else:
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
        )
    return seq, prev


def _protect_head(dialect: str) -> None:
    # The head may move forward only: a reset would let a truncated trail verify.
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_chain_head_forward() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' OR NEW.seq <= OLD.seq THEN
                    RAISE EXCEPTION 'audit_chain_head only moves forward';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE OR DELETE ON audit_chain_head "
            "FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head "
            "WHEN NEW.seq <= OLD.seq BEGIN SELECT RAISE(ABORT, 'audit_chain_head only moves forward'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head "
            "BEGIN SELECT RAISE(ABORT, 'audit_chain_head only moves forward'); END"
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("audit_events", sa.Column("seq", sa.BigInteger))
    op.add_column("audit_events", sa.Column("prev_hash", sa.String(64)))
    op.add_column("audit_events", sa.Column("hash", sa.String(64)))
    head_seq, head_hash = _chain_existing(dialect)
    op.create_index("ix_audit_seq", "audit_events", ["seq"], unique=True)
    op.create_index("ix_audit_subject", "audit_events", ["subject"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint(f"id = {HEAD_ID}", name="ck_audit_chain_head_single"),
    )
    op.bulk_insert(head, [{"id": HEAD_ID, "seq": head_seq, "hash": head_hash}])
    _protect_head(dialect)
    op.create_table(
        "consents",
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), primary_key=True),
        sa.Column("ai_processing", sa.Boolean, nullable=False),
        sa.Column("national_sharing", sa.Boolean, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_role", sa.String(32), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_table("consents")
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_chain_head_forward ON audit_chain_head")
        op.execute("DROP FUNCTION IF EXISTS audit_chain_head_forward()")
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_subject", table_name="audit_events")
    op.drop_index("ix_audit_seq", table_name="audit_events")
    for name in ("hash", "prev_hash", "seq"):
        op.drop_column("audit_events", name)
