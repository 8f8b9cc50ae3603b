"""Outbox rows drop the bytes they will never send again.

A capture (``sc``: an RGB picture of the radiograph with one finding's heat, a few megabytes) was kept in
the outbox after the destination accepted it, one copy per destination and capture, for as long as the
record lives: a study with five positive findings sent to one PACS left about 15 MB behind. A ``sent``
capture and every ``withheld`` row (never to be sent: the patient objected) now hold an empty payload;
a sent SR keeps its bytes (the SR of a study analysed again names it), a pending or dead row keeps them
(a send or an operator's retry needs them).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    empty = "X''" if op.get_bind().dialect.name == "sqlite" else "''::bytea"
    op.execute(
        f"UPDATE outbox SET payload = {empty} WHERE (state = 'sent' AND kind <> 'sr') OR state = 'withheld'"
    )


def downgrade() -> None:
    """Nothing to undo: the dropped bytes cannot come back, and an empty payload is valid in 0014."""
