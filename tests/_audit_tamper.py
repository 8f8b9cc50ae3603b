"""What a database administrator could do to an embedded (SQLite) audit trail, for the tests that show
the anchor outside the database catches it: lift the append-only triggers, edit, and either recompute
every hash and the head (a re-chain: the chain verifies on its own) or delete the last entries and move
the head back (a cut tail)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from inference.record._audit import CONTENT_FIELDS, GENESIS, entry_hash

TRIGGERS: Final = (
    "audit_events_no_update",
    "audit_events_no_delete",
    "audit_events_no_replace",
    "audit_chain_head_forward",
    "audit_chain_head_no_delete",
    "audit_chain_head_no_replace",
)
_CONTENT: Final = (*CONTENT_FIELDS, "request_id")  # what an entry's hash covers


def lift_triggers(connection: sqlite3.Connection) -> None:
    for name in TRIGGERS:
        connection.execute(f"DROP TRIGGER IF EXISTS {name}")


def rechain(db: Path, edit: str) -> None:
    """Run ``edit``, then recompute every entry's hash and the head, as one consistent chain."""
    with sqlite3.connect(db) as connection:
        lift_triggers(connection)
        connection.execute(edit)
        rows = connection.execute(
            f"SELECT id, {', '.join(_CONTENT)} FROM audit_events ORDER BY seq"
        ).fetchall()
        previous = GENESIS
        for seq, row in enumerate(rows, start=1):
            content = dict(zip(_CONTENT, row[1:], strict=True))
            content.update(seq=seq, prev_hash=previous)
            content["time"] = datetime.fromisoformat(content["time"]).replace(tzinfo=UTC)
            digest = entry_hash(content)
            connection.execute(
                "UPDATE audit_events SET seq = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (seq, previous, digest, row[0]),
            )
            previous = digest
        connection.execute("UPDATE audit_chain_head SET seq = ?, hash = ?", (len(rows), previous))


def cut_tail(db: Path, entries: int) -> None:
    """Delete the last ``entries`` entries and move the head back to the one before them."""
    with sqlite3.connect(db) as connection:
        lift_triggers(connection)
        last = connection.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
        kept = last - entries
        connection.execute("DELETE FROM audit_events WHERE seq > ?", (kept,))
        head = connection.execute("SELECT hash FROM audit_events WHERE seq = ?", (kept,)).fetchone()[0]
        connection.execute("UPDATE audit_chain_head SET seq = ?, hash = ?", (kept, head))
