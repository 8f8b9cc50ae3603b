"""The patient record: patients, studies, vitals, results, findings, heatmaps, feedback, devices, audit.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PNG_SIGNATURE_HEX = "89504e470d0a1a0a"


def _png_check(dialect: str) -> str:
    # The database refuses anything that is not a PNG, so a broken overlay aborts the whole result.
    if dialect == "postgresql":
        return f"substring(png from 1 for 8) = '\\x{_PNG_SIGNATURE_HEX}'::bytea"
    return f"substr(png, 1, 8) = x'{_PNG_SIGNATURE_HEX}'"


def _audit_append_only(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
            )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "patients",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("identifier", sa.String(128), nullable=False),
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256)),
        sa.Column("birth_date", sa.String(10)),
        sa.Column("sex", sa.String(16)),
        sa.Column("facility", sa.String(128)),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("identifier", "issuer", name="uq_patients_identifier_issuer"),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("accession", sa.String(64)),
        sa.Column("study_date", sa.String(10)),
        sa.Column("modality", sa.String(16)),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("study_instance_uid", name="uq_studies_uid"),
    )
    op.create_index("ix_studies_patient", "studies", ["patient_id"])
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("view_position", sa.String(16)),
        sa.Column("study_id", sa.String(36), sa.ForeignKey("studies.id"), nullable=False),
        sa.UniqueConstraint("sop_instance_uid", name="uq_instances_uid"),
    )
    op.create_index("ix_instances_study", "instances", ["study_id"])
    op.create_table(
        "vitals_observations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("respiratory_rate", sa.Float),
        sa.Column("spo2", sa.Float),
        sa.Column("spo2_scale", sa.Integer),
        sa.Column("on_oxygen", sa.Boolean),
        sa.Column("systolic_bp", sa.Float),
        sa.Column("diastolic_bp", sa.Float),
        sa.Column("heart_rate", sa.Float),
        sa.Column("temperature", sa.Float),
        sa.Column("consciousness", sa.String(1)),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.CheckConstraint("spo2_scale IN (1, 2)", name="ck_vitals_spo2_scale"),
        sa.CheckConstraint("consciousness IN ('A', 'C', 'V', 'P', 'U')", name="ck_vitals_consciousness"),
    )
    op.create_index("ix_vitals_patient", "vitals_observations", ["patient_id"])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("model_name", "model_version", "model_sha256", name="uq_devices_model"),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("study_id", sa.String(36), sa.ForeignKey("studies.id")),
        sa.Column("vitals_id", sa.String(36), sa.ForeignKey("vitals_observations.id")),
        sa.Column("device_id", sa.String(36), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("rationale", sa.JSON, nullable=False),
        sa.Column("source", sa.String(32)),
        sa.Column("instance_key", sa.String(64)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("instance_key", name="uq_results_instance_key"),
        sa.CheckConstraint("kind IN ('imaging', 'triage')", name="ck_results_kind"),
        sa.CheckConstraint("status IN ('open', 'reviewed')", name="ck_results_status"),
        sa.CheckConstraint("priority IN ('critical', 'urgent', 'routine')", name="ck_results_priority"),
        sa.CheckConstraint(
            "(kind = 'imaging' AND study_id IS NOT NULL) OR (kind = 'triage' AND vitals_id IS NOT NULL)",
            name="ck_results_subject_of_kind",
        ),
    )
    op.create_index("ix_results_worklist", "results", ["status", "priority", "created_at"])
    op.create_index("ix_results_patient", "results", ["patient_id"])
    op.create_index("ix_results_study", "results", ["study_id", "created_at"])
    op.create_table(
        "findings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("display", sa.String(128), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("positive", sa.Boolean, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("box", sa.JSON),
        sa.Column("has_heatmap", sa.Boolean, nullable=False),
        sa.UniqueConstraint("result_id", "code", name="uq_findings_result_code"),
        sa.CheckConstraint("probability >= 0 AND probability <= 1", name="ck_findings_probability"),
    )
    op.create_table(
        "heatmaps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("png", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("result_id", "code", name="uq_heatmaps_result_code"),
        sa.CheckConstraint(_png_check(dialect), name="ck_heatmaps_png_signature"),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("reader", sa.String(128), nullable=False),
        sa.Column("verdicts", sa.JSON, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_feedback_result", "feedback", ["result_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("facility", sa.String(128)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64)),
        sa.Column("resource_id", sa.String(128)),
        sa.Column("patient_id", sa.String(36)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("client", sa.Text),
    )
    op.create_index("ix_audit_time", "audit_events", ["time"])
    op.create_index("ix_audit_patient", "audit_events", ["patient_id"])
    _audit_append_only(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    for table in (
        "audit_events",
        "feedback",
        "heatmaps",
        "findings",
        "results",
        "devices",
        "vitals_observations",
        "instances",
        "studies",
        "patients",
    ):
        op.drop_table(table)
