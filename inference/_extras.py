"""A missing optional extra, told in one line: what is missing and the ``pip install`` that adds it.

The base install (``pip install dxassist``) is a complete server on the embedded SQLite defaults.
PostgreSQL (for the record or the MLflow store) needs the ``postgres`` extra, training the ``train``
extra (``training.cli`` says so itself), CUDA the ``gpu`` extra (``inference.runtime`` says so when
the provider is asked for). A database URL naming a driver that is not installed is found here,
before anything opens a connection, rather than as an import traceback deep in SQLAlchemy.
"""

from __future__ import annotations

# The DBAPI modules the optional extras provide; anything else is named as a driver to install.
_POSTGRES_DRIVER = "psycopg"


def missing_database_driver(url: str, setting: str) -> str | None:
    """One line saying what to install when the driver of database ``url`` is not installed.

    Args:
        url: A SQLAlchemy-style database URL (MLflow's tracking URIs for databases are the same).
        setting: The environment variable the URL came from, for the message.

    Returns:
        The message, or ``None`` when the driver imports (or ``url`` is no database URL, e.g. an MLflow
        server's ``http://`` address; other code reports a malformed URL).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        return None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        missing = e.name or parsed.get_driver_name()
        if parsed.get_backend_name() != "postgresql":
            return (
                f"{setting} needs the database driver '{missing}', not installed here: install it with pip, "
                "or use one of the supported databases (SQLite, PostgreSQL)."
            )
        if parsed.get_driver_name() != _POSTGRES_DRIVER:
            return (
                f"{setting} names the PostgreSQL driver '{parsed.get_driver_name()}', not installed here; "
                f"dxassist's 'postgres' extra installs psycopg 3: pip install 'dxassist[postgres]' and write "
                "the URL as postgresql+psycopg://..."
            )
        return (
            f"{setting} is a PostgreSQL URL but the 'postgres' extra is not installed here (missing: "
            f"{missing}): pip install 'dxassist[postgres]'."
        )
    return None
