"""When the record last changed a Patient or an ImagingStudy, and what each model was trained on.

``patients.updated`` and ``studies.updated``: a Patient changes when a demographic on file is filled in, an
ImagingStudy when a later result of the study adds instances, its accession or its date. Both now carry
``meta.lastUpdated`` and answer ``_lastUpdated`` (and ``$everything``'s ``_since``) from this column.
Rows on file are given the latest moment the record may have changed them, so that a client syncing
with ``_since`` misses nothing: a study, the newest result filed on it (or its filing); a patient, the
newest result its own facility filed for it (only that facility completes its demographics), or its
filing. PostgreSQL keeps the columns NOT NULL; SQLite cannot add that in place (``patients`` and
``studies`` are referenced by most tables: a batch copy would trip their foreign keys), and every writer
sets them.

``devices.training`` and ``devices.training_data``: what the model was trained on (the sentence each of
its results carries; the data-set line of its metadata), kept when the device is filed, so that the
Device of a model no longer served still says it. A device on file is given the sentence its newest
result carries (and the line that sentence quotes), when it carries one; else both stay empty.

Downgrading drops the four columns.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from inference.record._types import UTCDateTime

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The newest result that could have changed the row, when it is newer than the row's filing. A patient's
# demographics are completed only by the facility that filed it (NULL facilities are the same facility).
_LATEST: dict[str, str] = {
    "studies": "SELECT MAX(r.created_at) FROM results r WHERE r.study_id = studies.id",
    "patients": (
        "SELECT MAX(r.created_at) FROM results r WHERE r.patient_id = patients.id "
        "AND (r.facility = patients.facility OR (r.facility IS NULL AND patients.facility IS NULL))"
    ),
}
# The training sentences results carried as version 0022 was written (``services/_warnings.training``).
_SYNTHETIC = (
    "This model was trained on synthetic data only; its output has not been validated on real patients "
    "and must not be used for diagnosis."
)
_UNSAID = " does not say what data it was trained on; ask who registered it before relying on its output."
_SAID = " was trained on "
_SAID_END = ". Its output holds for patients and equipment like those of that data; a clinician decides."


def upgrade() -> None:
    connection = op.get_bind()
    for table, latest in _LATEST.items():
        op.add_column(table, sa.Column("updated", UTCDateTime()))
        op.execute(f"UPDATE {table} SET updated = created")
        # Two steps, no GREATEST (PostgreSQL) or two-argument MAX (SQLite): the same SQL on both.
        op.execute(f"UPDATE {table} SET updated = ({latest}) WHERE ({latest}) > created")
        if connection.dialect.name == "postgresql":
            op.alter_column(table, "updated", nullable=False)
    op.add_column("devices", sa.Column("training", sa.Text()))
    op.add_column("devices", sa.Column("training_data", sa.Text()))
    _fill_training(connection)


def _fill_training(connection: sa.Connection) -> None:
    devices = sa.table(
        "devices",
        sa.column("id", sa.String),
        sa.column("model_name", sa.String),
        sa.column("model_version", sa.String),
        sa.column("training", sa.Text),
        sa.column("training_data", sa.Text),
    )
    results = sa.table(
        "results", sa.column("device_id", sa.String), sa.column("created_at"), sa.column("warnings", sa.JSON)
    )
    for device_id, name, version in connection.execute(
        sa.select(devices.c.id, devices.c.model_name, devices.c.model_version)
    ).all():
        warnings = connection.execute(
            sa.select(results.c.warnings)
            .where(results.c.device_id == device_id)
            .order_by(results.c.created_at.desc())
            .limit(1)
        ).scalar()
        said = _training(warnings, f"Model {name} version {version}")
        if said is not None:
            connection.execute(
                devices.update()
                .where(devices.c.id == device_id)
                .values(training=said[0], training_data=said[1])
            )


def _training(warnings: Any, label: str) -> tuple[str, str | None] | None:
    """``(sentence, data-set line or None)`` of the training sentence among a result's ``warnings``."""
    for warning in warnings if isinstance(warnings, list) else []:
        if not isinstance(warning, str):
            continue
        if warning in (_SYNTHETIC, f"{label}{_UNSAID}"):
            return warning, None
        prefix = f"{label}{_SAID}"
        if warning.startswith(prefix) and warning.endswith(_SAID_END):
            line = warning.removeprefix(prefix).removesuffix(_SAID_END)
            if line:
                return warning, line
    return None


def downgrade() -> None:
    # SQLite drops a column in place since 3.35: the table, its rows and what refers to it stay.
    op.drop_column("devices", "training_data")
    op.drop_column("devices", "training")
    for table in _LATEST:
        op.drop_column(table, "updated")
