"""What the ``dxassist`` subcommands share: the error they report, the settings and the record they open,
the registry client, and plain-text tables."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inference.errors import InferenceError

if TYPE_CHECKING:
    from pathlib import Path

    from inference.config import Settings
    from inference.services._model_decisions import Decision
    from model_registry import RegisteredVersion

_KEY_FIGURES = ("val_macro_auroc", "val_auroc")


class CliError(InferenceError):
    """A failure to report on stderr with exit status ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- output helpers ---------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table with left-aligned columns, a header and a rule."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_figures(metrics: dict[str, float] | Any, *, only_key: bool = True) -> str:
    keys = [k for k in _KEY_FIGURES if k in metrics] if only_key else sorted(metrics)
    if only_key and not keys:
        keys = sorted(metrics)[:2]
    return ", ".join(f"{k}={metrics[k]:.3f}" for k in keys) or "-"


def _created(version: RegisteredVersion) -> str:
    return version.created_at.strftime("%Y-%m-%d %H:%M") if version.created_at else "-"


def _version_row(version: RegisteredVersion, *, with_name: bool) -> list[object]:
    row: list[object] = [version.name] if with_name else []
    row += [
        version.version,
        ",".join(version.aliases) or "-",
        (version.sha256 or "-")[:12],
        _created(version),
        "yes" if version.parity_passed else "NO",
        _dataset_digest(version),
        _fmt_figures(dict(version.metrics)),
    ]
    return row


def _dataset_digest(version: RegisteredVersion) -> str:
    """The start of the data set's content digest (``dataset_sha256``), which the promotion gate compares
    (as many digits as its reasons print); ``-`` for a data set without one."""
    return (version.dataset_digest or "-")[:12]


# -- settings and registry --------------------------------------------------------------------------


def _settings(*, make_home: bool = True) -> Settings:
    from pydantic import ValidationError

    from inference.config import get_settings

    try:
        settings = get_settings()
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors()
        )
        raise CliError(f"The settings are invalid: {problems}.", status=2) from e
    if not make_home:
        return settings
    try:
        settings.resolved_home  # noqa: B018  (made here, once: every command keeps its state there)
    except OSError as e:
        raise CliError(
            f"DXASSIST_HOME ({settings.home}) cannot be used as the state folder ({e.strerror}); point it "
            "at a folder this user may create and write.",
            status=2,
        ) from e
    _finish_restore(settings.resolved_home)
    _check_database_drivers(settings)
    return settings


def _finish_restore(home: Path) -> None:
    """Complete a ``backup restore`` into ``home`` killed while it moved the checked files into place
    (:mod:`inference._backup.journal`): no command starts on a half-restored home."""
    from inference._backup.journal import finish_moves

    try:
        finished = finish_moves(home, complete=True, remove=False)
    except OSError as e:
        raise CliError(
            f"DXASSIST_HOME ({home}) holds a restore killed while its files were moved into place, and it "
            f"could not be completed ({e.strerror or type(e).__name__}); run `dxassist backup restore` "
            "into it again.",
            status=2,
        ) from e
    if finished:
        sys.stderr.write(
            f"dxassist: completed the restore into {home} that was killed while its checked files were "
            "moved into place.\n"
        )


def _check_database_drivers(settings: Settings) -> None:
    """One line, before anything connects, when a database URL needs an extra that is not installed."""
    from inference._extras import missing_database_driver

    for url, setting in (
        (settings.record_url, "DXASSIST_DATABASE_URL"),
        (settings.tracking_uri, "MLFLOW_TRACKING_URI"),
    ):
        message = missing_database_driver(url, setting)
        if message is not None:
            raise CliError(message, status=2)


def _check_execution_provider(settings: Settings) -> None:
    """One line, before a server starts, when CUDA is asked for and the ``gpu`` extra cannot give it."""
    if settings.runtime.execution_provider != "cuda":
        return
    from inference.runtime import ConfigurationError, select_providers

    try:
        select_providers("cuda")
    except ConfigurationError as e:
        raise CliError(str(e), status=2) from e


def _registry(settings: Settings) -> Any:
    from model_registry import RegistryClient

    return RegistryClient(settings.tracking_uri, settings.artifact_root)


def _training_cli() -> Any:
    """Import ``training.cli`` by name: training is optional on a server install."""
    try:
        return importlib.import_module("training.cli")
    except ImportError as e:
        raise CliError(
            f"This subcommand needs the training code, not installed here ({e.name or e}): "
            "pip install 'dxassist[train]' (in a checkout: pip install -e '.[train]').",
            status=2,
        ) from e


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.4f}"


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _operator_subject(args: argparse.Namespace) -> str:
    """Who decides, for the audit trail: ``--operator``, else the operating-system login (``cli:<name>``)."""
    import getpass

    from inference.services._model_decisions import operator_subject

    operator = args.operator
    if operator is None:
        try:
            operator = getpass.getuser()
        except (OSError, KeyError) as e:  # no login name in the environment or the password database
            raise CliError(
                "The operating-system login cannot be read; say who decides with --operator NAME.", 2
            ) from e
    try:
        return operator_subject(operator)
    except ValueError as e:
        raise CliError(str(e), 2) from e


def _open_decision_record(settings: Settings, *, note_new: bool = True) -> Any:
    """The record a registry decision is audited in (anchored, as the server's), or a refusal to decide.

    ``note_new``: say on stderr when the record had to be made (not for ``bootstrap``, which makes homes).
    """
    from inference.record import HeadAnchor, Record, RecordUnavailable

    home = settings.resolved_home
    new = settings.database_url is None and not (home / "record.db").exists()
    record = Record(settings.record_url, anchor=HeadAnchor(home))
    try:
        record.migrate()
    except Exception as e:  # unreachable database, wrong URL: say so without a traceback
        record.close()
        if isinstance(e, RecordUnavailable):  # which database, and why it did not open
            why = str(e)
        else:  # a failed migration's message may quote rows: the type only
            why = f"The patient record cannot be opened ({type(e).__name__})."
        raise CliError(
            f"{why} So nothing was changed: a change of "
            "the model in service is written to its audit trail before it is made."
        ) from e
    if new and note_new:
        # Not silent: run from a workstation without the server's settings, the entry lands in a new file.
        print(
            f"Note: a new patient record was made at {home / 'record.db'}; this decision is audited there. "
            "If the server's record is elsewhere, run with its DXASSIST_HOME or DXASSIST_DATABASE_URL.",
            file=sys.stderr,
        )
    return record


def _audited_line(action: str, subject: str, decision: Decision) -> str:
    return (
        f"Audit trail: {action} of {decision.name}@{decision.version} by {subject}, outcome "
        f"{decision.outcome} (entry {decision.seq}, request id {decision.request_id})."
    )


def _terminal_user() -> str:
    """Who runs this command, for the audit trail: ``cli:<the terminal's user>``."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _open_record(settings: Settings) -> Any:
    """The record, migrated, anchoring the audit trail's signed head after each append (as the server)."""
    from inference.record import HeadAnchor, Record, RecordUnavailable

    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
    except RecordUnavailable as e:  # which database, and why it did not open
        record.close()
        raise CliError(str(e), status=3) from e
    except Exception as e:  # a failed migration's message may quote rows: the type only
        record.close()
        raise CliError(f"The patient record cannot be opened ({type(e).__name__}).") from e
    return record
