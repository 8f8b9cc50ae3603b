"""Display renderings and class activation maps of imaging results: heatmaps are drawn on demand.

Results filed before this revision keep their stored PNG overlays (table ``heatmaps``); results filed
after it keep one display rendering and the CAMs instead (a few hundred KB at most, whatever the number
of positive findings).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "renderings",
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id"), primary_key=True),
        sa.Column("display", sa.LargeBinary, nullable=False),
        sa.Column("cams", sa.LargeBinary, nullable=False),
        sa.Column("geometry", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("renderings")
