"""Keep the embedded MLflow store's artifact locations inside the ``DXASSIST_HOME`` that holds it.

MLflow records every artifact location as an absolute ``file://`` URI (experiments, runs, logged
models, model versions). A ``DXASSIST_HOME`` that was copied or moved would otherwise go on reading
from, and writing new runs into, the folder it came from. Before a client opens the embedded store,
:func:`relocate_store` finds the artifact root the store was written under (experiments created by
this package live at ``<root>/<model name>``) and, when it is not the current one, rewrites that
prefix in one transaction. Nothing outside the store's own folder is read or written.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

_log = logging.getLogger(__name__)

_EXPERIMENT_PREFIX = "dxassist/"

# Every column of MLflow's schema that holds an artifact URI (absent columns are skipped: the schema
# of another MLflow version may lack some).
_URI_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def relocate_store(db_path: Path, artifact_root: Path) -> int:
    """Point the artifact locations of a copied or moved SQLite store at ``artifact_root``.

    Args:
        db_path: The ``mlflow.db`` file (nothing happens if it does not exist yet).
        artifact_root: The current artifact root (``DXASSIST_HOME/mlartifacts``).

    Returns:
        How many stored locations were rewritten (0 when the store is already in place).
    """
    if not db_path.is_file():
        return 0
    new_root = Path(artifact_root).expanduser().resolve().as_uri()
    connection = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
    try:
        if not _old_roots(connection, new_root):
            return 0  # the common case: one read, no write lock taken
        # Another process may relocate at the same moment: decide again under the write lock.
        connection.execute("BEGIN IMMEDIATE")
        try:
            changed = 0
            columns = _existing_columns(connection)
            for old_root in _old_roots(connection, new_root):
                for table, column in columns:
                    changed += _rewrite(connection, table, column, old_root, new_root)
                _log.warning(
                    "The MLflow store %s was written under %s; its artifact locations now point at %s.",
                    db_path.name,
                    _path_of(old_root),
                    _path_of(new_root),
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return changed
    finally:
        connection.close()


def _old_roots(connection: sqlite3.Connection, new_root: str) -> list[str]:
    """Artifact roots (``file://`` URIs) of this package's experiments that are not ``new_root``."""
    try:
        rows = connection.execute(
            "SELECT name, artifact_location FROM experiments WHERE name LIKE ?", (f"{_EXPERIMENT_PREFIX}%",)
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # an empty file or a store MLflow has not migrated yet: nothing recorded
    roots: set[str] = set()
    for name, location in rows:
        model = str(name).removeprefix(_EXPERIMENT_PREFIX)
        if not isinstance(location, str) or not location.startswith("file:"):
            continue
        if not location.endswith(f"/{model}"):
            continue  # not laid out by this package: leave it alone
        root = location[: -len(model) - 1]
        if root != new_root:
            roots.add(root)
    return sorted(roots)


def _existing_columns(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for table, column in _URI_COLUMNS:
        names = {str(row[1]) for row in connection.execute(f"PRAGMA table_info({table})")}
        if column in names:
            found.append((table, column))
    return found


def _rewrite(connection: sqlite3.Connection, table: str, column: str, old_root: str, new_root: str) -> int:
    """Replace the ``old_root`` prefix of ``table.column`` (whole path segments only) by ``new_root``."""
    prefix = f"{old_root}/"
    cursor = connection.execute(
        f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
        (f"{new_root}/", len(prefix) + 1, len(prefix), prefix),
    )
    return max(cursor.rowcount, 0)


def _path_of(uri: str) -> str:
    return unquote(urlparse(uri).path)
