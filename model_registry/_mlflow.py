"""The one place that imports MLflow: lazy import, quiet logging, error translation."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from model_registry._errors import NotFound, RegistryError, RegistryUnreachable

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")

# Error codes MLflow uses for a request it understood and refused: the registry answered.
_ANSWERED_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
        "BAD_REQUEST",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
    }
)


def import_mlflow() -> ModuleType:
    """Import MLflow with its console chatter (INFO logs, progress bars) switched off."""
    # Artifact downloads draw tqdm bars on stderr by default; a server log is no place for them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    for logger_name in ("mlflow", "alembic"):
        logger = logging.getLogger(logger_name)
        if logger.level in (logging.NOTSET, logging.DEBUG, logging.INFO):
            logger.setLevel(logging.WARNING)
    return mlflow


def check_name(name: str) -> str:
    """Refuse registered-model names that could escape a cache folder or an MLflow filter string."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Model name {name!r} is not accepted; use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)."
        )
    return name


def check_alias(alias: str) -> str:
    """Refuse alias names MLflow or the cache would not handle (same rules as model names)."""
    if not isinstance(alias, str) or not _NAME.match(alias):
        raise ValueError(
            f"Alias {alias!r} is not accepted; use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)."
        )
    return alias


def check_version(version: str | int) -> str:
    """Normalise a version number to MLflow's string form, refusing anything else."""
    text = str(version).strip()
    if not _VERSION.match(text):
        raise ValueError(f"Version {version!r} is not accepted; a version is a positive whole number.")
    return text


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn MLflow, database and network failures into this package's errors.

    Args:
        what: What was being done, for the message (e.g. "reading model cxr-findings").

    Raises:
        NotFound: MLflow said the resource does not exist.
        RegistryError: MLflow understood the request and refused it.
        RegistryUnreachable: Any other MLflow, database or I/O failure (connection refused, database
            locked or corrupt). Other exceptions (bugs) pass through unchanged.
    """
    try:
        yield
    except RegistryError:
        raise
    except Exception as e:
        if not _is_store_failure(e):
            raise  # a bug or a bad argument, not the registry: let it surface as itself
        code = _error_code(e)
        message = _first_line(e)
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(f"The registry has no such resource while {what}: {message}") from e
        if code in _ANSWERED_CODES:
            raise RegistryError(f"The registry refused the request while {what}: {message}") from e
        raise RegistryUnreachable(
            f"The MLflow registry could not be reached while {what} ({type(e).__name__}: {message})."
        ) from e


def _is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` came from MLflow, the database driver or the network (not from a bug)."""
    if isinstance(exc, OSError):  # connection errors, requests' errors, file-store I/O
        return True
    # Only modules already loaded can have raised; looking them up avoids importing them here.
    for module_name, class_name in (
        ("mlflow.exceptions", "MlflowException"),
        ("sqlalchemy.exc", "SQLAlchemyError"),
        ("sqlite3", "Error"),
    ):
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def _error_code(exc: BaseException) -> str | None:
    code: Any = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
