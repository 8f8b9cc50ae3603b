"""The words of each patient's name as FHIR name searches compare them (``Patient?name=``, ``family=``,
``given=``): accents dropped, case folded, one space before each word, filled in for every patient on
file. Before, those parameters were not supported and a lenient search ignored them (every patient the
caller may read came back).

Downgrading drops the three columns (the names themselves are untouched).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inference.record._models import name_words

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("name_words", "family_words", "given_words")
_BATCH = 1000


def upgrade() -> None:
    # Added and dropped in place (SQLite since 3.35): ``patients`` is referenced by most tables, and a
    # batch copy of it would trip their foreign keys.
    for column in _COLUMNS:
        op.add_column("patients", sa.Column(column, sa.String(400)))
    patients = sa.table("patients", sa.column("id", sa.String), sa.column("name", sa.String),
                        *(sa.column(c, sa.String) for c in _COLUMNS))  # fmt: skip
    update = (
        patients.update()
        .where(patients.c.id == sa.bindparam("patient_id"))
        .values({c: sa.bindparam(f"new_{c}") for c in _COLUMNS})
    )
    connection = op.get_bind()
    last = ""
    while True:
        rows = connection.execute(
            sa.select(patients.c.id, patients.c.name)
            .where(patients.c.name.is_not(None), patients.c.id > last)
            .order_by(patients.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        # One statement per batch, executed for every row (the driver's executemany: a pipeline on
        # PostgreSQL), not one round trip per patient.
        connection.execute(update, [_words(patient_id, name) for patient_id, name in rows])
        last = rows[-1][0]


def _words(patient_id: str, name: str) -> dict[str, str | None]:
    every, family, given = name_words(name)
    return {
        "patient_id": patient_id,
        "new_name_words": every,
        "new_family_words": family,
        "new_given_words": given,
    }


def downgrade() -> None:
    for column in _COLUMNS:
        op.drop_column("patients", column)
