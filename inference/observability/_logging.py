"""Structured JSON logs: one object per line, fields from an allowlist only.

Health data must never reach a log. The formatter therefore writes the message and a fixed set of
structured fields (``extra={...}`` keys listed in :data:`SAFE_FIELDS`); any other ``extra`` is dropped.
For exceptions it writes the type and the stack frames but not the exception's text, which may quote
input (a patient name in a DICOM attribute, an identifier in a query).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO, Any, Final

from inference.observability._phi_guard import (
    OWN_PACKAGES,
    PhiRedactor,
    install_warning_guard,
)

SAFE_FIELDS: Final[tuple[str, ...]] = (
    "event",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "code",
    "role",
    "result_id",
    "destination",
    "attempts",
    "retry_in_seconds",
    "error",
    "kind",
    "model",
    "model_version",
    "instances",
    "priority",
    "outcome",
    "bytes",
    "permission",
    "assessable",
    "drift_signal",
    "drift_statistic",
    "drift_value",
    "drift_level",
    "drift_window",
    "item",
    "associations",
)
"""``extra`` keys a log line may carry. Patient-bearing values (names, identifiers, dates) are not here."""

LOGGER_NAMES: Final[tuple[str, ...]] = ("inference", "model_registry")
_MARK: Final = "_dxassist_json_handler"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ``ts``, ``level``, ``logger``, ``message`` and safe extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in SAFE_FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _exc, tb = record.exc_info
            # PhiRedactor may have swapped the exception for a stand-in; the original type is kept.
            entry["exc_type"] = getattr(record, "_dxassist_exc_type", None) or (
                f"{exc_type.__module__}.{exc_type.__qualname__}"
            )
            entry["stack"] = "".join(traceback.format_tb(tb)) if tb is not None else None
        return json.dumps(entry, ensure_ascii=False, default=str)


_REQUEST_ID: ContextVar[str | None] = ContextVar("dxassist_request_id", default=None)


def bind_request_id(request_id: str | None) -> Token[str | None]:
    """Make ``request_id`` the id of every record logged in this context (and tasks and threads started
    from it with ``asyncio.to_thread``). Returns the token for :func:`reset_request_id`."""
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Undo :func:`bind_request_id`."""
    _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    """The id of the HTTP request being served in this context, if any, or of the work outside a request
    (a DICOM association, a study analysis, an output build, a delivery attempt) bound with
    :func:`correlated`."""
    return _REQUEST_ID.get()


def new_correlation_id(prefix: str) -> str:
    """A fresh id for work that does not come from an HTTP request: ``<prefix>-<32 hex digits>``.

    Random (uuid4), so it says nothing about the patient or the study it follows.
    """
    return f"{prefix}-{uuid.uuid4().hex}"


@contextmanager
def correlated(correlation_id: str) -> Iterator[str]:
    """Bind ``correlation_id`` as the current request id for the block (this thread or task only).

    Every record logged in the block, and every audit entry appended in it (``request_id``), carries it,
    as they carry an HTTP request's ``X-Request-ID``; ``asyncio.to_thread`` calls inherit it.
    """
    token = _REQUEST_ID.set(correlation_id)
    try:
        yield correlation_id
    finally:
        _REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id on a record that does not carry one already."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``request_id`` and let the record through."""
        if getattr(record, "request_id", None) is None:
            request_id = _REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class _OwnOrWarning(logging.Filter):
    """Our records at the level their logger lets through; third-party records from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in OWN_PACKAGES or record.levelno >= logging.WARNING


def configure_logging(
    *,
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
    log_file: Path | None = None,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 5,
) -> list[logging.Handler]:
    """Send the process's log records to JSON handlers on the root logger (idempotent).

    Records of the ``inference`` and ``model_registry`` loggers are written from ``level`` up;
    third-party records (WARNING and above) go to the same stream and file with their text withheld,
    and warnings are logged without their text (:mod:`inference.observability._phi_guard`). Every record
    logged while an HTTP request is served carries its ``request_id``.

    Handlers installed by an earlier call are replaced, so an app factory may call this each time.
    They sit on the root logger, so pytest's ``caplog`` sees the same records.

    Args:
        level: Level of the ``inference`` and ``model_registry`` loggers.
        stream: Where to write (default ``sys.stderr``).
        log_file: Also append JSON lines to this file (its folder is created). None: the stream only,
            for a platform that collects standard streams.
        max_bytes: Size at which the file is rotated (``server.jsonl`` → ``server.jsonl.1`` ...);
            0 never rotates (for an external ``logrotate`` with ``copytruncate``).
        backups: Rotated files kept.

    Returns:
        The installed handlers.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(stream if stream is not None else sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # One file handler per file in the process: two handlers rotating one file would lose lines.
        handlers.append(
            RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        )
    formatter = JsonFormatter()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        # Handlers of earlier versions of this function sat on our loggers.
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
            old.close()
        logger.setLevel(level)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_OwnOrWarning())
        handler.addFilter(PhiRedactor())
        handler.addFilter(RequestIdFilter())
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    install_warning_guard()
    return handlers
