"""Fixtures of the record tests: a throwaway PostgreSQL cluster and a migrated ``Record`` per backend.

The PostgreSQL cluster is real (Debian's ``postgresql`` package: ``initdb`` + ``pg_ctl``), started once per
session on 127.0.0.1 with a free port; each test gets its own database in it. Every record test runs
against SQLite and PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.record import Record


def _postgres_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin or on "
        "PATH; install the Debian package with `apt-get install -y --no-install-recommends postgresql`. "
        "The record tests run against a real PostgreSQL and are never skipped."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL cluster; yields the URL prefix ``postgresql+psycopg://postgres@127.0.0.1:PORT``."""
    bindir = _postgres_bindir()
    # A PostgreSQL cluster refuses to run as root: run it as the `postgres` account when we are root.
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dxassist-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    port = _free_port()

    def run(*args: str) -> None:
        completed = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{completed.stdout}\n{completed.stderr}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "server.log"),
        "-w",
        "-t",
        "60",
        "-o",
        options,
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _new_postgres_database(server_url: str) -> str:
    import psycopg

    name = f"record_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A brand-new, empty database URL of each backend (for tests of the migrations themselves)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'record.db'}"
    return _new_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
def shared_postgres_record(postgres_server: str) -> Iterator[Record]:
    """One migrated PostgreSQL record for the session; tests empty it instead of creating databases."""
    rec = Record(_new_postgres_database(postgres_server))
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
