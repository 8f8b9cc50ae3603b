"""Keep patient data out of what other people's code prints: warnings, log records, uncaught errors.

Our own log lines are built from an allowlist (:mod:`inference.observability._logging`). Libraries are
not: highdicom warns with the patient's and the referring physician's name when a name has no caret,
pydicom warns and logs invalid values as they are (a birth date written ``1923-04-17``), and an
exception's text may quote any attribute. So, in every process dxassist starts:

- a warning is logged as one line that names its category and where it was raised, never its text;
- a record of a third-party logger keeps its level, logger and code location; its text is withheld,
  except for loggers whose messages are fixed templates (uvicorn, asyncio), where only numbers are
  filled in;
- an exception keeps its type and stack frames (file, line, code), never its message, whichever
  formatter prints it;
- an uncaught exception (main thread or other threads) is printed the same way;
- a record logged before any handler is installed (Python's last-resort handler) is redacted too.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

OWN_PACKAGES: Final[frozenset[str]] = frozenset({"inference", "model_registry", "training", "benchmarks"})
"""Top-level packages whose log messages are ours (built without patient data, checked by tests)."""

TEMPLATE_LOGGERS: Final[frozenset[str]] = frozenset({"uvicorn", "asyncio"})
"""Third-party loggers whose messages are fixed templates: kept, with only numeric arguments filled in."""

WITHHELD: Final = "text withheld: third-party messages may quote patient data"
WARNING_LOGGER: Final = "inference.warnings"


class Withheld(Exception):
    """Stands in for an exception whose message is not printed; says which type it was."""


def _own(name: str) -> bool:
    return name.split(".", 1)[0] in OWN_PACKAGES


def _numbers_only(args: Any) -> Any:
    def keep(value: Any) -> Any:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else "..."

    if isinstance(args, tuple):
        return tuple(keep(a) for a in args)
    if isinstance(args, dict):
        return {k: keep(v) for k, v in args.items()}
    return keep(args)


def _fill(template: str, args: Any) -> str:
    try:
        return template % _numbers_only(args) if args else template
    except (TypeError, ValueError, KeyError):  # a %d given "...", or a template that is not one
        return template


def safe_exc_info(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None],
) -> tuple[type[BaseException], BaseException, TracebackType | None]:
    """The same exception type and frames with a message that says only the type."""
    exc_type, _value, tb = exc_info
    stand_in = Withheld(f"{exc_type.__module__}.{exc_type.__qualname__} (message withheld)")
    return Withheld, stand_in, tb


class PhiRedactor(logging.Filter):
    """A handler filter that makes a record safe to print, whatever formatter the handler has.

    It rewrites the record in place (once): the text of third-party records and the message of any
    attached exception are replaced as the module docstring says.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place and let it through."""
        if getattr(record, "_dxassist_redacted", False):
            return True
        if not _own(record.name):
            where = f"{record.module}:{record.lineno}"
            if record.name.split(".", 1)[0] in TEMPLATE_LOGGERS and isinstance(record.msg, str):
                record.msg = _fill(record.msg, record.args)
            else:
                record.msg = f"{WITHHELD} ({record.name}, {where})"
            record.args = None
        if record.exc_info and record.exc_info[0] is not None and record.exc_info[1] is not None:
            exc_type = record.exc_info[0]
            record._dxassist_exc_type = f"{exc_type.__module__}.{exc_type.__qualname__}"
            record.exc_info = safe_exc_info(record.exc_info)
            record.exc_text = None
        record._dxassist_redacted = True
        return True


class ThirdPartyOnly(logging.Filter):
    """Lets through only records of loggers that are not ours (ours have handlers of their own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a third-party record."""
        return not _own(record.name)


class QuietThirdParty(logging.Filter):
    """Drops third-party records below WARNING (a command run at INFO shows its own progress only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a third-party record below WARNING."""
        return _own(record.name) or record.levelno >= logging.WARNING


def _where(filename: str, lineno: int) -> str:
    """``package/module.py:line`` of a warning, without the local install path."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :]) + f":{lineno}"
    for package in OWN_PACKAGES:
        if package in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(package) :]) + f":{lineno}"
    return f"{Path(filename).name}:{lineno}"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` replacement: one log line with the category and place, no text."""
    logging.getLogger(WARNING_LOGGER).warning(
        "%s raised at %s (%s)",
        category.__name__,
        _where(filename, lineno),
        WITHHELD,
        extra={"event": "third_party_warning", "kind": category.__name__},
    )


def install_warning_guard() -> None:
    """Route every warning that is shown to :data:`WARNING_LOGGER`, without its text (idempotent)."""
    warnings.showwarning = _show_warning


def guard_handlers(handlers: list[logging.Handler]) -> None:
    """Put a :class:`PhiRedactor` on each handler that has none."""
    for handler in handlers:
        if not any(isinstance(f, PhiRedactor) for f in handler.filters):
            handler.addFilter(PhiRedactor())


def _print_uncaught(
    exc_type: type[BaseException], value: BaseException | None, tb: TracebackType | None, label: str
) -> None:
    stream = sys.stderr
    if stream is None:
        return
    name = f"{exc_type.__module__}.{exc_type.__qualname__}"
    stream.write(f"dxassist: uncaught {name} in {label} (message withheld: it may quote patient data)\n")
    stream.write("".join(traceback.format_tb(tb)))
    stream.flush()


def _excepthook(exc_type: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, value, tb)
        return
    _print_uncaught(exc_type, value, tb, "the main thread")


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    label = f"thread {args.thread.name}" if args.thread is not None else "a thread"
    _print_uncaught(args.exc_type, args.exc_value, args.exc_traceback, label)


def install_process_guard() -> None:
    """For a process entry point: warnings, root handlers and uncaught exceptions all PHI-free.

    Not called by :func:`inference.api.create_app` (a test process keeps pytest's own hooks); the
    ``dxassist`` command calls it first thing.
    """
    install_warning_guard()
    guard_handlers(logging.getLogger().handlers)
    # Records logged before any handler exists go to logging.lastResort, which prints them raw.
    last_resort = logging.StreamHandler(sys.stderr)
    last_resort.setLevel(logging.WARNING)
    last_resort.addFilter(PhiRedactor())
    logging.lastResort = last_resort
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
