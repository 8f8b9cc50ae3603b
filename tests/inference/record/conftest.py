"""Fixtures of the record tests: a throwaway PostgreSQL cluster and a migrated ``Record`` per backend.

The PostgreSQL cluster is real (Debian's ``postgresql`` package: ``initdb`` + ``pg_ctl``), started once per
session on 127.0.0.1 with a free port; each test gets its own database in it. Every record test runs
against SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _postgres import new_postgres_database, running_postgres

from inference.record import Record


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL cluster; yields the URL prefix ``postgresql+psycopg://postgres@127.0.0.1:PORT``."""
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A brand-new, empty database URL of each backend (for tests of the migrations themselves)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'record.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
def shared_postgres_record(postgres_server: str) -> Iterator[Record]:
    """One migrated PostgreSQL record for the session; tests empty it instead of creating databases."""
    rec = Record(new_postgres_database(postgres_server))
    rec.migrate()
    try:
        yield rec
    finally:
        rec.close()


def _empty(rec: Record) -> None:
    from sqlalchemy import text

    from inference.record._audit import GENESIS
    from inference.record._models import Base

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with rec.engine.begin() as connection:
        # The audit trail refuses TRUNCATE (migration 0021): the test cluster's superuser lifts its
        # triggers for this transaction only.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # A new, empty audit chain starts at the genesis head, as migration 0003 leaves it.
        connection.execute(
            text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, :genesis)"), {"genesis": GENESIS}
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def record(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Record]:
    """A migrated, empty record on each backend."""
    if request.param == "postgresql":
        rec = request.getfixturevalue("shared_postgres_record")
        _empty(rec)
        yield rec
        return
    rec = Record(f"sqlite:///{tmp_path / 'record.db'}")
    rec.migrate()
    try:
        yield rec
    finally:
        rec.close()
