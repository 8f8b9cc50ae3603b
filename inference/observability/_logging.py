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
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from inference.observability._phi_guard import (
    PhiRedactor,
    ThirdPartyOnly,
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


def configure_logging(
    *, level: int | str = logging.INFO, stream: IO[str] | None = None, log_file: Path | None = None
) -> list[logging.Handler]:
    """Send the ``inference`` and ``model_registry`` loggers to JSON handlers (idempotent).

    Third-party loggers (WARNING and above) go to the same stream and file with their text withheld,
    and warnings are logged without their text (:mod:`inference.observability._phi_guard`).

    Handlers installed by an earlier call are replaced, so an app factory may call this each time.
    Records still propagate to the root logger (so pytest's ``caplog`` sees them).

    Args:
        level: Level of the ``inference`` and ``model_registry`` loggers.
        stream: Where to write (default ``sys.stderr``).
        log_file: Also append JSON lines to this file (its folder is created).

    Returns:
        The installed handlers.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(stream if stream is not None else sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    formatter = JsonFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(PhiRedactor())
        setattr(handler, _MARK, True)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
    _route_third_party(stream, log_file)
    install_warning_guard()
    return handlers


def _route_third_party(stream: IO[str] | None, log_file: Path | None) -> None:
    """Third-party records (uvicorn, pynetdicom, pydicom, highdicom ...) of level WARNING and above go
    to the same places, as JSON, with their text withheld (see :mod:`._phi_guard`).

    Without this they would reach Python's last-resort handler, which prints them raw to stderr.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(stream if stream is not None else sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        handler.setLevel(logging.WARNING)
        handler.addFilter(ThirdPartyOnly())
        handler.addFilter(PhiRedactor())
        setattr(handler, _MARK, True)
        root.addHandler(handler)
