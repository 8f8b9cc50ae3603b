"""A SQLite record's write-ahead log is copied into the database file by a thread of its own, never by
the commit of a request (which would pay for copying and syncing while every other writer waits)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from _loopback import wait_until
from sqlalchemy import text

from inference.record._database import Database

BLOB = 256 * 1024
COMMITS = 24  # 6 MB of log: past SQLite's own automatic checkpoint (1000 pages) several times over


def _write_blobs(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    for i in range(COMMITS):
        database.write(
            lambda s, i=i: s.execute(
                text("INSERT INTO blobs VALUES (:i, randomblob(:n))"), {"i": i, "n": BLOB}
            )
        )


def _autocheckpoint(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def test_commits_only_append_and_the_checkpointer_copies_the_log(tmp_path: Path) -> None:
    path = tmp_path / "record.db"
    database = Database(f"sqlite:///{path}")
    try:
        assert _autocheckpoint(database) == 0  # no commit copies the log on its writer's time
        _write_blobs(database)
        # The background checkpoint moves every committed page into the database file soon after.
        wait_until(
            lambda: path.stat().st_size >= COMMITS * BLOB, timeout=60, what="the log copied into record.db"
        )
        # A reader that opens the file alone sees every commit.
        with closing(sqlite3.connect(path)) as other:
            assert other.execute("SELECT count(*), sum(length(data)) FROM blobs").fetchone() == (
                COMMITS,
                COMMITS * BLOB,
            )
    finally:
        database.close()
    # Closed (the last connection), the log is copied whole and removed.
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    with closing(sqlite3.connect(path)) as reopened:
        assert reopened.execute("SELECT count(*) FROM blobs").fetchone() == (COMMITS,)


def test_a_record_in_memory_keeps_sqlite_defaults(tmp_path: Path) -> None:
    database = Database("sqlite://")
    try:
        database.write(lambda s: s.execute(text("CREATE TABLE t (x INTEGER)")))
        assert _autocheckpoint(database) == 1000
    finally:
        database.close()
