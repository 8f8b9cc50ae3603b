"""The operator's commands on the record and the spools: ``migrate``, ``audit verify``, ``backup`` (its
bodies in :mod:`inference._backup_cli`), ``drift``, ``export-training-set``, ``export verify``, ``user``,
``dead-letter`` and ``batch score``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inference._common_cli import (
    CliError,
    _open_record,
    _settings,
    _terminal_user,
    format_table,
)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from inference._cli_commands import audit_verify

    return audit_verify(_settings())


def _backup_passphrase(args: argparse.Namespace, *, confirm: bool = False) -> bytes | None:
    """The custodian key's passphrase from the first line of stdin (``--passphrase-stdin``), or None.

    Typed at a terminal, it is asked for with the terminal's echo off (and, with ``confirm``, twice):
    read as a line, it stayed on the screen and in the terminal's scrollback.

    Raises:
        CliError: No passphrase, or the two typed differ (exit status 2).
    """
    if not getattr(args, "passphrase_stdin", False):
        return None
    if sys.stdin.isatty():
        import getpass

        line = getpass.getpass("Passphrase of the custodian key: ")
        if confirm and getpass.getpass("The same passphrase again: ") != line:
            raise CliError(
                "--passphrase-stdin: the two passphrases typed differ; nothing was written.", status=2
            )
    else:
        line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CliError("--passphrase-stdin: stdin gave no passphrase.", status=2)
    return line.encode("utf-8")


def _cmd_backup(args: argparse.Namespace) -> int:
    from inference._backup_cli import (
        BackupRefused,
        backup_create,
        backup_restore,
        backup_signer_key,
        backup_verify,
    )

    try:
        if args.backup_command == "keygen":
            return _backup_keygen(args)
        if args.backup_command == "signer":
            return backup_signer_key(_settings())
        if args.backup_command == "create":
            return backup_create(_settings(), args.dest, logs=args.logs, encrypt_to=args.encrypt_to)
        origin = {"signer": args.signer, "any_origin": args.trust_any_origin}
        if args.backup_command == "verify":
            scratch = _unsealing_place(args.scratch) if args.key is not None else None
            return backup_verify(
                args.dest, key=args.key, passphrase=_backup_passphrase(args), scratch=scratch, **origin
            )
        return backup_restore(
            args.backup, args.home, key=args.key, passphrase=_backup_passphrase(args), **origin
        )
    except BackupRefused as e:
        raise CliError(str(e), status=2) from e


def _unsealing_place(scratch: Path | None) -> Path:
    """Where ``backup verify --key`` opens a sealed backup: ``--scratch DIR``, or else the home when it
    exists. Never made: on a custodian's machine a verify made a ``DXASSIST_HOME`` (``./var``) that stayed.

    Raises:
        CliError: ``scratch`` is not a folder, or neither it was given nor the home exists (exit 2).
    """
    if scratch is not None:
        if not scratch.is_dir():
            raise CliError(f"--scratch {scratch}: not an existing folder; nothing was opened.", status=2)
        return scratch
    home = _settings(make_home=False).home.expanduser().resolve()
    if not home.is_dir():
        raise CliError(
            "backup verify --key opens the sealed backup into a private folder of an existing folder, "
            f"and DXASSIST_HOME ({home}) does not exist: give --scratch DIR (a folder of yours on a disk "
            "only you read, with room for the backup's content; what is opened there is removed after). "
            "Nothing was opened or created.",
            status=2,
        )
    return home


def _backup_keygen(args: argparse.Namespace) -> int:
    from inference.security._sealing import SealError, generate_custodian_key

    prefix: Path = args.prefix
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    try:
        fingerprint = generate_custodian_key(private, public, _backup_passphrase(args, confirm=True))
    except SealError as e:
        raise CliError(str(e), status=2) from e
    print(
        f"custodian key {fingerprint[:16]}: private key {private} (keep it off the server, with the "
        f"backups' custodians), public key {public} (for `dxassist backup create DEST --encrypt-to "
        f"{public}`)."
    )
    return 0


def _cmd_drift(args: argparse.Namespace) -> int:
    import json
    import math

    from inference.services._drift import drift_report_offline

    settings = _settings()
    try:
        report = drift_report_offline(settings, alias=args.alias)
    except Exception as e:  # no cached model, no record: say what is missing instead of a traceback
        raise CliError(f"No drift report: {e}", status=2) from e
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    elif not report["reference"]:
        print(f"{report['model']} version {report['version']} carries no validation reference; retrain it.")
    else:
        print(
            f"{report['model']} version {report['version']}: {report['observations']} of the last "
            f"{report['window']} results vs {report['reference_n']} validation images; alert at PSI "
            f"{report['alert_level']} after {report['min_observations']} results."
        )
        rows = []
        for signal, value in sorted(report["psi"].items()):
            state = "-" if value is None or math.isnan(value) else f"{value:.3f}"
            level = "DRIFT" if signal in report["drifting"] else ""
            rows.append([signal, state, level])
        print(format_table(["signal", "PSI", ""], rows))
        print("ALERT: drift over the configured level." if report["alert"] else "No drift alert.")
    return 1 if report["alert"] else 0


def _cmd_export_training_set(args: argparse.Namespace) -> int:
    from inference._cli_commands import export_kept_training_set, export_training_set
    from inference.observability import correlated, new_correlation_id

    # One id per export (export-<hex>): its audit entry and its log lines carry it as request_id.
    with correlated(new_correlation_id("export")):
        if args.source is None:
            return export_kept_training_set(_settings(), out=args.out, model=args.model)
        return export_training_set(_settings(), out=args.out, source=args.source)


def _cmd_export_verify(args: argparse.Namespace) -> int:
    from inference._cli_commands import verify_export

    return verify_export(args.folder)


def _cmd_user(args: argparse.Namespace) -> int:
    from inference._cli_commands import user_command

    try:
        return user_command(_settings(), args)
    except ValueError as e:
        raise CliError(str(e), status=2) from e


def _cmd_migrate(args: argparse.Namespace) -> int:
    record = _open_record(_settings())
    record.close()
    print("The patient record's schema is at the newest revision.")
    return 0


def _cmd_dead_letter_list(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from inference.services import list_dead_letters

    settings = _settings()
    record = _open_record(settings)
    try:
        # What is listed names results and studies: read with its audit entries (dead-letter:read).
        items = list_dead_letters(
            record=record, home=settings.listener_spool, kind=args.kind, subject=_terminal_user()
        )
    finally:
        record.close()
    if args.json:
        print(json.dumps([asdict(item) for item in items], indent=2))
        return 0
    if not items:
        print("The dead-letter queue is empty.")
        return 0
    rows = [
        [item.id, item.subject, item.destination or "-", item.attempts, item.code or "-", item.since or "-"]
        for item in items
    ]
    print(format_table(["ID", "RESULT / STUDY", "DESTINATION", "ATTEMPTS", "ERROR", "SINCE"], rows))
    print()
    for item in items:
        if item.error:
            print(f"{item.id}: {item.error}")
    print(
        f"\n{len(items)} dead letter(s); `dxassist dead-letter retry ID...` (or --all) tries them again, "
        "`dxassist dead-letter discard ID...` gives up on them for good."
    )
    return 0


def _cmd_dead_letter_retry(args: argparse.Namespace) -> int:

    from inference.services import DeadLetterError, retry_dead_letters

    if not args.ids and not args.all:
        raise CliError("Name the dead letters to retry (ids from `dxassist dead-letter list`) or --all.", 2)
    if args.ids and args.all:
        raise CliError("Give ids or --all, not both.", status=2)
    settings = _settings()
    record = _open_record(settings)
    try:
        retried = retry_dead_letters(
            record=record,
            home=settings.listener_spool,
            ids=args.ids,
            kind=args.kind,
            every=args.all,
            subject=_terminal_user(),
        )
    except DeadLetterError as e:
        raise CliError(str(e), status=2) from e
    finally:
        record.close()
    for item in retried:
        print(f"retrying {item}")
    print(
        f"{len(retried)} dead letter(s) handed back for a fresh set of attempts; the running "
        "`dxassist serve` / `dxassist listen` takes them up within seconds."
    )
    return 0


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not 0 <= days <= 36_500:  # NaN fails too
        raise argparse.ArgumentTypeError(f"a number of days from 0 to 36500, not {value[:20]!r}")
    return days


def _cmd_dead_letter_discard(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from inference.services import DeadLetterError, discard_dead_letters

    if not args.ids and not args.all:
        raise CliError("Name the dead letters to discard (ids from `dxassist dead-letter list`) or --all.", 2)
    if args.ids and args.all:
        raise CliError("Give ids or --all, not both.", status=2)
    if args.older_than is not None and not args.all:
        raise CliError("--older-than goes with --all (it picks among every dead letter).", status=2)
    settings = _settings()
    record = _open_record(settings)
    try:
        discarded = discard_dead_letters(
            record=record,
            home=settings.listener_spool,
            ids=args.ids,
            kind=args.kind,
            every=args.all,
            older_than=None if args.older_than is None else timedelta(days=args.older_than),
            subject=_terminal_user(),
        )
    except DeadLetterError as e:
        raise CliError(str(e), status=2) from e
    finally:
        record.close()
    for item in discarded:
        print(f"discarded {item}")
    print(
        f"{len(discarded)} dead letter(s) discarded for good: never retried, their bytes and files deleted."
    )
    return 0


def _cmd_batch_score(args: argparse.Namespace) -> int:
    from inference._batch_cli import batch_score_command
    from inference.batch import BatchError

    settings = _settings()
    try:
        return batch_score_command(
            settings,
            source=args.source,
            facility=args.facility,
            scheduler=args.scheduler,
            workers=args.workers,
            model_version=args.model_version,
            json_output=args.json,
            progress=not args.no_progress,
            echo=print,
        )
    except BatchError as e:
        raise CliError(str(e), status=2) from e
