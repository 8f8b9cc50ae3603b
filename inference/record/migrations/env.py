"""Alembic environment of the patient record, driven programmatically by ``Record.migrate()``.

The caller hands an open SQLAlchemy connection in ``config.attributes["connection"]``; there is no
``alembic.ini`` and no logging configuration here (the process owns logging).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from inference.record._models import Base

# An arbitrary constant: replicas starting together against one PostgreSQL take turns migrating.
_PG_MIGRATION_LOCK = 74_201_563


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Run the record's migrations through inference.record.Record.migrate().")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("The record's migrations run online only, through Record.migrate().")
_run()
