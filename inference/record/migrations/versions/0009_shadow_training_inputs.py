"""Shadow scoring and the feedback loop: challenger outputs per result, model inputs kept for retraining.

``shadow_results`` holds what a registered ``challenger`` said about an input the ``champion`` answered
(never shown as a clinical result, never sent anywhere): one row per result and challenger version.
``training_inputs`` holds, while the patient's consent allows it, the de-identified model input of an
imaging result (the windowed, letterboxed image at the model's working resolution, float16 ``npz``):
what a retraining on the hospital's own studies needs, without the PACS.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shadow_results",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("champion_version", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("result_id", "version", name="uq_shadow_results_result_version"),
    )
    op.create_index("ix_shadow_results_pair", "shadow_results", ["model_name", "champion_version", "version"])
    op.create_table(
        "training_inputs",
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), primary_key=True),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("input_size", sa.Integer, nullable=False),
        sa.Column("pixels", sa.LargeBinary, nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_training_inputs_patient", "training_inputs", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_training_inputs_patient", table_name="training_inputs")
    op.drop_table("training_inputs")
    op.drop_index("ix_shadow_results_pair", table_name="shadow_results")
    op.drop_table("shadow_results")
