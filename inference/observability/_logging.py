"""Structured JSON logs: one object per line, fields from an allowlist only.

Health data must never reach a log. The formatter therefore writes the message and a fixed set of
structured fields (``extra={...}`` keys listed in :data:`SAFE_FIELDS`); any other ``extra`` is dropped.
For exceptions it writes the type and the stack frames but not the exception's text, which may quote
input (a patient name in a DICOM attribute, an identifier in a query).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
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
    "client_request_id",
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
    "lines_lost",
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


class _LogFile(RotatingFileHandler):
    """The JSON log file, which says once a minute on the stream that it cannot be written (a full disk, a
    removed folder) instead of a traceback for every line.

    Every line also reaches the stream handler, so nothing is lost from the stream while the file fails;
    the report counts the lines the file missed since the last one.
    """

    REPORT_EVERY_SECONDS: Final = 60.0

    def __init__(self, path: Path, *, report: IO[str], max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._report = report
        self._failures = threading.Lock()
        self._lost = 0
        self._reported = -math.inf

    def close(self) -> None:
        try:
            super().close()  # flushes what the file could not take, and closes it whatever happens
        except OSError:
            pass  # those lines reached the stream; the stop of a server must not fail on them

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's name)
        error = sys.exc_info()[1]
        with self._failures:
            self._lost += 1
            now = time.monotonic()
            if now - self._reported < self.REPORT_EVERY_SECONDS:
                return
            self._reported, lost, self._lost = now, self._lost, 0
        note = logging.LogRecord(
            "inference.observability",
            logging.ERROR,
            __file__,
            0,
            "the log file cannot be written (%s); its lines go to the standard error stream only until it "
            "can, and this is said again at most once a minute",
            ((error.strerror if isinstance(error, OSError) else None) or type(error).__name__,),
            None,
        )
        note.event = "log_file_failed"
        note.item = str(self.baseFilename)
        note.lines_lost = lost  # since the last report
        try:
            self._report.write(JsonFormatter().format(note) + "\n")
            self._report.flush()
        except Exception:  # noqa: BLE001  (the stream failing too: nowhere left to say it)
            pass


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
            for a platform that collects standard streams. A file that cannot be written (a full disk)
            is said on the stream once a minute, with the count of lines it missed.
        max_bytes: Size at which the file is rotated (``server.jsonl`` → ``server.jsonl.1`` ...);
            0 never rotates (for an external ``logrotate`` with ``copytruncate``).
        backups: Rotated files kept.

    Returns:
        The installed handlers.
    """
    out = stream if stream is not None else sys.stderr
    handlers: list[logging.Handler] = [logging.StreamHandler(out)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # One file handler per file in the process: two handlers rotating one file would lose lines.
        handlers.append(_LogFile(log_file, report=out, max_bytes=max_bytes, backups=backups))
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
