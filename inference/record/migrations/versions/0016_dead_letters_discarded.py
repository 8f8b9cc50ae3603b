"""The terminal ``discarded`` state of outbox rows and output builds: dead letters an operator gave up on.

A dead letter kept its bytes (a delivery's SR or captures) or its source header (a build) for as long
as the record lived, waiting for a retry that might never come. ``dxassist dead-letter discard`` ends it
for good: the row becomes ``discarded`` (never claimed, never retried) and drops what it held. The state
columns widen from 8 to 16 characters to hold the name.

Downgrading turns discarded deliveries into ``withheld`` rows and discarded builds into ``done`` ones:
the terminal states of revision 0015 that hold no bytes and that no retry hands back.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTBOX: tuple[str, ...] = ("pending", "sent", "dead", "withheld")
_BUILDS: tuple[str, ...] = ("pending", "done", "dead")


def _states(names: Sequence[str]) -> str:
    return "state IN (" + ", ".join(f"'{name}'" for name in names) + ")"


def _rebuild(table: str, constraint: str, states: Sequence[str], width: int, before: str | None) -> None:
    """Replace ``table``'s CHECK on ``state`` by one allowing ``states``, its width set to ``width``;
    ``before`` (an UPDATE) runs while no CHECK holds, before the width changes."""
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(constraint, type_="check")
    if before is not None:
        op.execute(before)
    with op.batch_alter_table(table) as batch:
        batch.alter_column("state", type_=sa.String(width), existing_nullable=False)
        batch.create_check_constraint(constraint, _states(states))
    _carry_on_ids(table)


def _carry_on_ids(table: str) -> None:
    """On PostgreSQL, make ``table``'s ``id`` sequence carry on after the ids its rows hold.

    The batch copy is a new table with a new sequence starting at 1, while the copied rows keep their ids:
    the next row inserted (the build of the next result filed, its deliveries) collided with the first.
    """
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
    )


def upgrade() -> None:
    _rebuild("outbox", "ck_outbox_state", (*_OUTBOX, "discarded"), 16, None)
    _rebuild("output_builds", "ck_output_builds_state", (*_BUILDS, "discarded"), 16, None)


def downgrade() -> None:
    # Both were emptied when discarded (payload, source, spool), so the older terminal states fit them.
    _rebuild(
        "outbox",
        "ck_outbox_state",
        _OUTBOX,
        8,
        "UPDATE outbox SET state = 'withheld' WHERE state = 'discarded'",
    )
    _rebuild(
        "output_builds",
        "ck_output_builds_state",
        _BUILDS,
        8,
        "UPDATE output_builds SET state = 'done' WHERE state = 'discarded'",
    )
