"""Engine construction (SQLite pragmas, PostgreSQL via psycopg 3) and programmatic Alembic upgrades."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from inference.record._errors import RecordUnavailable

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

IMMEDIATE = "dxassist_sqlite_immediate"
"""Execution option: start the SQLite transaction with BEGIN IMMEDIATE (writers queue, never deadlock)."""

_SQLITE_BUSY_TIMEOUT_MS = 10_000

# A replica whose host dies mid-transaction leaves its PostgreSQL session open (the server cannot tell a
# silent host from a slow one), and that session's row locks (the audit chain's head among them) would stop
# every other replica's writes until TCP gave up, hours later. The server ends a session left idle inside
# a transaction after 30 s (our transactions never wait on anything but the database) and probes idle
# connections, so the survivors stall for seconds, not hours. Keepalives on our side notice a dead server.
_POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "options": (
        "-c idle_in_transaction_session_timeout=30000"
        " -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
    ),
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "connect_timeout": 10,
}


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    """An engine for ``url``: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL.

    Parameters are hidden from SQLAlchemy's error messages: they carry patients' names and identifiers.

    Args:
        url: The SQLAlchemy URL.
        background_checkpoints: SQLite: commits never copy the write-ahead log into the database file
            (``wal_autocheckpoint=0``); the caller checkpoints on a thread of its own
            (:class:`inference.record._database.Database`).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            # One shared connection, or every connection would see its own empty in-memory database.
            kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, autocheckpoint=not background_checkpoints)
        return engine
    kwargs["pool_pre_ping"] = True
    kwargs["connect_args"] = _POSTGRES_CONNECT_ARGS
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine, *, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions break BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            # FULL: every commit is on disk before it returns (the write-ahead log is fsynced). With
            # NORMAL, the last commits before a power loss can vanish although they were answered: a
            # study the PACS was told is stored (its spooled copy already removed), and audit entries
            # the anchor file already names, which `audit verify` would then report as a cut trail.
            cursor.execute("PRAGMA synchronous=FULL")
            if not autocheckpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that later writes can fail at once with "database is locked" when two
        # writers race; IMMEDIATE takes the write lock up front, so the busy timeout applies instead.
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_REASON_CHARS = 300


def connect_or_explain(engine: Engine) -> Connection:
    """A connection of ``engine``, or :class:`RecordUnavailable` saying which database did not open and
    why, in one line an operator can act on (instead of the driver's traceback).

    Raises:
        RecordUnavailable: The connection could not be made, or the URL's host holds an ``@`` (a
            password's unencoded end, never printed).
    """
    if "@" in (engine.url.host or ""):
        # A password holding "@" written as is: the parser took its end for part of the host, which
        # the message below (and the driver's reason) would print.
        raise RecordUnavailable(
            "The patient record's database URL (DXASSIST_DATABASE_URL) names a host with '@' in it: a "
            "password (or user name) holding '@' must be written percent-encoded, %40. Nothing was "
            "contacted."
        )
    try:
        return engine.connect()
    except DBAPIError as e:
        where = engine.url.set(query={}).render_as_string(hide_password=True)
        lines = [line.strip() for line in str(e.orig).splitlines() if line.strip()]
        reason = (lines[0] if lines else type(e.orig).__name__)[:_REASON_CHARS]
        raise RecordUnavailable(
            f"The patient record's database {where} cannot be opened: {reason}. Check "
            "DXASSIST_DATABASE_URL (or DXASSIST_HOME) and that the database answers, then start again."
        ) from e


def upgrade_to_head(engine: Engine) -> None:
    """Run ``alembic upgrade head`` on ``engine`` without an ``alembic.ini``.

    Raises:
        RecordUnavailable: The database cannot be reached or opened.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    with connect_or_explain(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
    logger.info("Patient record schema is at the newest revision.")
