"""Custody and identity: results owned by the facility that sent them, pixel digests for resends,
explicit sharing between facilities, break-the-glass grants, identity mismatches, and audit triggers that
also stop ``INSERT OR REPLACE``.

- ``results.facility`` / ``studies.facility``: the facility whose principal or DICOM node sent them
  (filled from the patient's facility for rows written before this revision).
- ``instances.pixel_digest``: sha256 of the Pixel Data element as received; a resend with the same UIDs
  must carry the same pixels.
- ``patients.issuer``: normalised (trimmed, upper case) where that merges no two patients.
- ``consents.facility_sharing``: the patient's explicit consent to share results between facilities
  (false until recorded).
- ``break_glass``: reasoned, time-limited access of one person to one patient's results.
- ``identity_mismatches``: a sender whose demographics differ from the record on file (fields, no values).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _no_replace(dialect: str) -> None:
    # SQLite's INSERT OR REPLACE deletes the conflicting row without firing DELETE triggers (unless
    # recursive_triggers is on, which a hand-held sqlite3 shell does not set): refuse the insert itself.
    if dialect != "sqlite":
        return  # PostgreSQL has no REPLACE; ON CONFLICT DO UPDATE fires the UPDATE trigger.
    op.execute(
        "CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events "
        "WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id OR seq = NEW.seq) "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_chain_head_no_replace BEFORE INSERT ON audit_chain_head "
        "WHEN EXISTS (SELECT 1 FROM audit_chain_head) "
        "BEGIN SELECT RAISE(ABORT, 'audit_chain_head only moves forward'); END"
    )


def _normalise_issuers() -> None:
    # Upper-case and trim issuers, except where two patients would then collide (left for an operator).
    op.execute(
        """
        UPDATE patients SET issuer = UPPER(TRIM(issuer))
        WHERE issuer <> UPPER(TRIM(issuer))
          AND NOT EXISTS (
            SELECT 1 FROM patients other
            WHERE other.identifier = patients.identifier
              AND other.id <> patients.id
              AND UPPER(TRIM(other.issuer)) = UPPER(TRIM(patients.issuer))
          )
        """
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("results", sa.Column("facility", sa.String(128)))
    op.add_column("studies", sa.Column("facility", sa.String(128)))
    op.add_column("instances", sa.Column("pixel_digest", sa.String(64)))
    op.add_column(
        "consents",
        sa.Column("facility_sharing", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE results SET facility = (SELECT facility FROM patients WHERE patients.id = results.patient_id)"
    )
    op.execute(
        "UPDATE studies SET facility = (SELECT facility FROM patients WHERE patients.id = studies.patient_id)"
    )
    op.create_index("ix_results_facility", "results", ["facility"])
    _normalise_issuers()
    op.create_table(
        "break_glass",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("facility", sa.String(128)),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_break_glass_patient_subject", "break_glass", ["patient_id", "subject"])
    op.create_table(
        "identity_mismatches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("result_id", sa.String(36)),
        sa.Column("facility", sa.String(128)),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("fields", sa.String(128), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_identity_mismatches_patient", "identity_mismatches", ["patient_id"])
    _no_replace(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_chain_head_no_replace")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_replace")
    op.drop_table("identity_mismatches")
    op.drop_table("break_glass")
    op.drop_index("ix_results_facility", table_name="results")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("facility_sharing")
    for table, column in (("instances", "pixel_digest"), ("studies", "facility"), ("results", "facility")):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
