"""The ``dxassist`` command line (console script ``dxassist = inference.cli:main``).

``bootstrap`` and ``train`` load ``training.cli`` by name only when they run, so a server install
without torch or the training code still has every other subcommand.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import inference  # noqa: F401  (first: switches ONNX Runtime and MLflow telemetry off)
from inference._common_cli import CliError, format_table
from inference._models_cli import (
    _cmd_bootstrap,
    _cmd_registry_compare,
    _cmd_registry_list,
    _cmd_registry_promote,
    _cmd_registry_report,
    _cmd_registry_rollback,
    _cmd_registry_show,
    _cmd_train,
    serving_problem_of,
    unservable_champions,
)
from inference._operations_cli import (
    _cmd_audit_verify,
    _cmd_backup,
    _cmd_batch_score,
    _cmd_dead_letter_discard,
    _cmd_dead_letter_list,
    _cmd_dead_letter_retry,
    _cmd_drift,
    _cmd_export_training_set,
    _cmd_export_verify,
    _cmd_migrate,
    _cmd_user,
    _days,
)
from inference._serve_cli import _cmd_listen, _cmd_serve, _worker_count
from inference._token_cli import (
    _cmd_token_issue,
    _cmd_token_revocations,
    _cmd_token_revoke,
    _cmd_token_unrevoke,
    _token_id,
    _token_subject,
)
from inference.observability._phi_guard import QuietThirdParty, install_process_guard

_ROLES_HELP = "radiologist, clinician, pacs, ml_engineer, auditor or admin"

__all__ = ["CliError", "build_parser", "format_table", "main", "serving_problem_of", "unservable_champions"]


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``dxassist`` argument parser (each subcommand sets ``handler``)."""
    parser = argparse.ArgumentParser(
        prog="dxassist",
        description="AI diagnostic assist for chest radiographs and vital signs. "
        "State lives under DXASSIST_HOME.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"dxassist {inference.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    operator_help = "who decides, audited as cli:NAME (default: the operating-system login)"
    p = sub.add_parser("bootstrap", help="train, register and promote any served model that has no champion")
    p.add_argument("--profile", choices=("quick", "full"), default="quick")
    p.add_argument("--operator", default=None, metavar="NAME", help=operator_help)
    p.set_defaults(handler=_cmd_bootstrap, log_info=True)

    p = sub.add_parser("train", help="train, evaluate and export a model; --register adds it as challenger")
    p.add_argument("kind", choices=("imaging", "triage"))
    p.add_argument("--profile", choices=("quick", "full"), default="quick")
    p.add_argument("--dataset", default=None, help="dataset adapter name (default: synthetic)")
    p.add_argument("--data", type=Path, default=None, help="dataset location (for non-synthetic datasets)")
    p.add_argument("--config", type=Path, default=None, help="YAML file overriding the profile's values")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: DXASSIST_HOME/runs/...)")
    p.add_argument("--register", action="store_true", help="register the result as challenger (audited)")
    p.add_argument("--operator", default=None, metavar="NAME", help=operator_help + "; with --register")
    p.set_defaults(handler=_cmd_train, log_info=True)

    registry = sub.add_parser("registry", help="inspect the model registry, promote or roll back")
    rsub = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    p = rsub.add_parser("list", help="every registered model version")
    p.set_defaults(handler=_cmd_registry_list)
    p = rsub.add_parser("show", help="one model: aliases, versions and gate figures")
    p.add_argument("name")
    p.set_defaults(handler=_cmd_registry_show)
    p = rsub.add_parser("promote", help="run the promotion gate, then move champion to VERSION (audited)")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--operator", default=None, metavar="NAME", help=operator_help)
    p.set_defaults(handler=_cmd_registry_promote)
    p = rsub.add_parser("rollback", help="move champion back to the previous champion (audited)")
    p.add_argument("name")
    p.add_argument("--operator", default=None, metavar="NAME", help=operator_help)
    p.set_defaults(handler=_cmd_registry_rollback)
    p = rsub.add_parser("report", help="Markdown tables of the figures logged on the registered runs")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to report (default: both served models)")
    p.add_argument("--alias", default="champion", help="the version each alias points at (default: champion)")
    p.set_defaults(handler=_cmd_registry_report)
    p = rsub.add_parser(
        "compare", help="champion vs challenger on live studies (shadow scoring): agreement, shift, readers"
    )
    p.add_argument("name")
    p.add_argument("--champion", default=None, help="champion version (default: the champion alias)")
    p.add_argument("--challenger", default=None, help="challenger version (default: the challenger alias)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(handler=_cmd_registry_compare)

    p = sub.add_parser("serve", help="the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ssl-certfile", type=Path, default=None)
    p.add_argument("--ssl-keyfile", type=Path, default=None)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        help="server processes on the port (default DXASSIST_WORKERS, 1); about one per core",
    )
    p.set_defaults(handler=_cmd_serve, own_logging=True)

    token = sub.add_parser("token", help="bearer tokens for the API")
    tsub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = tsub.add_parser("issue", help="print a signed bearer token")
    p.add_argument("--subject", required=True, help="user or system name (never a patient)")
    p.add_argument("--role", required=True, help=_ROLES_HELP)
    p.add_argument("--facility", default=None)
    p.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    p.set_defaults(handler=_cmd_token_issue)
    p = tsub.add_parser("revoke", help="refuse one token (--jti) or every token of a subject issued so far")
    p.add_argument("--jti", default=None, type=_token_id, help="the token's id (printed by `token issue`)")
    p.add_argument("--subject", default=None, type=_token_subject, help="every token of this subject")
    p.add_argument("--reason", default=None, help="why (kept with the revocation; no patient data)")
    p.set_defaults(handler=_cmd_token_revoke)
    p = tsub.add_parser("unrevoke", help="take back a revocation made by mistake (--jti or --subject)")
    p.add_argument("--jti", default=None, type=_token_id, help="the revoked token's id")
    p.add_argument("--subject", default=None, type=_token_subject, help="every revocation of this subject")
    p.set_defaults(handler=_cmd_token_unrevoke)
    p = tsub.add_parser("revocations", help="list the revoked tokens and subjects")
    p.set_defaults(handler=_cmd_token_revocations)

    p = sub.add_parser("listen", help="DICOM DIMSE listener (C-ECHO, C-STORE)")
    p.add_argument("--ae-title", default="DXASSIST")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default DXASSIST_DIMSE_PORT or 11112")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve GET /metrics (Prometheus) on this port of DXASSIST_DIMSE_METRICS_HOST (loopback); "
        "default DXASSIST_DIMSE_METRICS_PORT, unset: not served",
    )
    p.set_defaults(handler=_cmd_listen, own_logging=True)

    p = sub.add_parser(
        "migrate", help="bring the patient record's schema to the newest revision (the release's first step)"
    )
    p.set_defaults(handler=_cmd_migrate)

    audit = sub.add_parser("audit", help="the hash-chained audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = asub.add_parser("verify", help="check the chain; exit 1 and name the entries if any was altered")
    p.set_defaults(handler=_cmd_audit_verify)

    backup = sub.add_parser("backup", help="a consistent, verifiable copy of DXASSIST_HOME, while it serves")
    bksub = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    p = bksub.add_parser("create", help="copy the home into DEST (a new or empty folder), manifest last")
    p.add_argument("dest", type=Path, metavar="DEST")
    p.add_argument("--logs", action="store_true", help="also copy logs/ (left out by default)")
    p.add_argument(
        "--encrypt-to",
        type=Path,
        metavar="CUSTODIAN.pub",
        help="seal the backup for this custodian's public key (`backup keygen`); only its private key "
        "opens it",
    )
    p.set_defaults(handler=_cmd_backup)
    key_help = "the custodian's private key, to open a sealed backup"
    pass_help = "read the custodian key's passphrase from the first line of stdin"

    def origin_flags(p: argparse.ArgumentParser) -> None:
        who = p.add_mutually_exclusive_group()
        who.add_argument(
            "--signer",
            type=Path,
            metavar="SERVER.pub",
            help="check that the backup was made by this server (its `backup signer` public key); an "
            "unsigned backup is refused",
        )
        who.add_argument(
            "--trust-any-origin",
            action="store_true",
            help="take a backup without checking who made it (unsigned, or the signer's key lost): "
            "anyone with the custodian's public key can seal one",
        )

    p = bksub.add_parser("verify", help="check every file and the copied audit trail; exit 1 naming problems")
    p.add_argument("dest", type=Path, metavar="DEST")
    p.add_argument("--key", type=Path, metavar="CUSTODIAN.key", help=key_help)
    p.add_argument(
        "--scratch",
        type=Path,
        metavar="DIR",
        help="with --key: open the sealed backup into a private folder of DIR, removed after (default: "
        "DXASSIST_HOME when it exists; verify never makes it)",
    )
    p.add_argument("--passphrase-stdin", action="store_true", help=pass_help)
    origin_flags(p)
    p.set_defaults(handler=_cmd_backup)
    p = bksub.add_parser(
        "restore", help="copy a verified backup into HOME (a new or empty folder), then check it"
    )
    p.add_argument("backup", type=Path, metavar="BACKUP")
    p.add_argument("home", type=Path, metavar="HOME")
    p.add_argument("--key", type=Path, metavar="CUSTODIAN.key", help=key_help)
    p.add_argument("--passphrase-stdin", action="store_true", help=pass_help)
    origin_flags(p)
    p.set_defaults(handler=_cmd_backup)
    p = bksub.add_parser(
        "signer", help="print this server's backup-signing public key (PEM), for custodians' --signer"
    )
    p.set_defaults(handler=_cmd_backup)
    p = bksub.add_parser(
        "keygen", help="make a custodian key pair PREFIX.key / PREFIX.pub for sealed backups (off the server)"
    )
    p.add_argument("prefix", type=Path, metavar="PREFIX")
    p.add_argument("--passphrase-stdin", action="store_true", help="protect PREFIX.key with a passphrase")
    p.set_defaults(handler=_cmd_backup)

    dead = sub.add_parser(
        "dead-letter",
        help="what stopped retrying (received studies, output builds, deliveries): list, retry or discard it",
    )
    dsub = dead.add_subparsers(dest="dead_letter_command", required=True, metavar="ACTION")
    p = dsub.add_parser("list", help="every dead letter with its error code")
    p.add_argument("--kind", choices=("study", "build", "delivery"), default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_cmd_dead_letter_list)
    p = dsub.add_parser("retry", help="give dead letters a fresh set of attempts")
    p.add_argument("ids", nargs="*", metavar="ID", help="ids from `dxassist dead-letter list`")
    p.add_argument("--all", action="store_true", help="every dead letter (of --kind)")
    p.add_argument("--kind", choices=("study", "build", "delivery"), default=None)
    p.set_defaults(handler=_cmd_dead_letter_retry)
    p = dsub.add_parser(
        "discard", help="give up on dead letters for good: their bytes and files are deleted (audited)"
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="ids from `dxassist dead-letter list`")
    p.add_argument("--all", action="store_true", help="every dead letter (of --kind)")
    p.add_argument("--kind", choices=("study", "build", "delivery"), default=None)
    p.add_argument(
        "--older-than",
        type=_days,
        default=None,
        metavar="DAYS",
        help="with --all: only those dead for at least DAYS days (see SINCE in `list`)",
    )
    p.set_defaults(handler=_cmd_dead_letter_discard)

    p = sub.add_parser(
        "drift",
        help="drift of the served imaging model (PSI of its scores vs validation); exit 1 while in alert",
    )
    p.add_argument("--alias", default="champion", help="model alias to report on (default champion)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_cmd_drift)

    p = sub.add_parser(
        "export-training-set",
        help="de-identified copy (DICOM PS3.15 Basic Profile) of a DICOM folder with the readers' labels",
    )
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="folder of DICOM files to export (de-identified DICOM copies); without it, the model inputs "
        "the server kept for the readers' verdicts, in the 'dxassist-export' format `train --dataset` reads",
    )
    p.add_argument("--model", default="cxr-findings", help="model whose kept inputs are exported")
    p.add_argument("--out", type=Path, required=True, help="new or empty output folder")
    p.set_defaults(handler=_cmd_export_training_set)

    export = sub.add_parser("export", help="check a training export written by export-training-set")
    esub = export.add_subparsers(dest="export_command", required=True, metavar="ACTION")
    p = esub.add_parser(
        "verify",
        help="recompute the content digest of a 'dxassist-export' folder; exit 1 if it no longer matches "
        "its manifest's content_sha256 (a file changed, added or removed since the export)",
    )
    p.add_argument("folder", type=Path, metavar="FOLDER")
    p.set_defaults(handler=_cmd_export_verify)

    batch = sub.add_parser("batch", help="score a DICOM archive on Dask distributed (the 'batch' extra)")
    bsub = batch.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    p = bsub.add_parser(
        "score", help="score every study of a folder tree or a DICOMweb query into the record; resumable"
    )
    p.add_argument("source", help="a folder of DICOM files, or a QIDO-RS study query URL (.../studies?...)")
    p.add_argument(
        "--facility",
        default=None,
        help="the facility that owns the archive and its results "
        "(default: DXASSIST_BATCH_FACILITY, else the one facility the configuration names)",
    )
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: cores, max 4)")
    p.add_argument("--model-version", default=None, help="imaging model version (default: the champion)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=_cmd_batch_score)

    user = sub.add_parser("user", help="local accounts for the web pages (sign-in at /ui/)")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = usub.add_parser("add", help="create an account (password from a prompt, or --password-stdin)")
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, help=_ROLES_HELP)
    p.add_argument("--facility", default=None, help="the facility whose patients the user may see")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    how.add_argument(
        "--sso-only", action="store_true",
        help="no password: the account signs in through the identity provider only (DXASSIST_UI_OIDC_ISSUER)",
    )  # fmt: skip
    p.add_argument(
        "--sso-subject", default=None, metavar="SUB",
        help="bind the account to this subject (sub) of the identity provider from the start (otherwise "
        "its first single sign-on binds it)",
    )  # fmt: skip
    p.set_defaults(handler=_cmd_user)
    p = usub.add_parser("list", help="every account with its role, facility and state")
    p.set_defaults(handler=_cmd_user)
    p = usub.add_parser("disable", help="disable an account and end its sessions")
    p.add_argument("username")
    p.set_defaults(handler=_cmd_user)
    p = usub.add_parser(
        "sso-unbind",
        help="forget the identity-provider subject an account is bound to (its next single sign-on binds "
        "it again)",
    )
    p.add_argument("username")
    p.set_defaults(handler=_cmd_user)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dxassist`` with ``argv`` (default: the process arguments); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if getattr(args, "own_logging", False):
        pass  # the server sets up its own structured logging; a second handler would print twice
    elif not logging.getLogger().handlers:
        verbose = logging.INFO if getattr(args, "log_info", False) else logging.WARNING
        level = logging.DEBUG if args.verbose else verbose
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(QuietThirdParty())
    # Before anything runs: warnings, third-party records and uncaught errors never print patient data.
    install_process_guard()
    from inference.record import RecordError, RecordUnavailable
    from model_registry import PromotionRefused, RegistryError

    try:
        status: int = args.handler(args)
    except CliError as e:
        print(f"dxassist: {e}", file=sys.stderr)
        return e.status
    except PromotionRefused as e:
        print(f"dxassist: promotion refused. {e.reason}", file=sys.stderr)
        return 1
    except RegistryError as e:
        print(f"dxassist: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        if args.command != "registry":
            raise
        # Names and versions typed by the user that the registry does not accept.
        print(f"dxassist: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        # A command that cleaned up after the interrupt says what it left (`backup create`).
        print(f"dxassist: {e.args[0] if e.args else 'interrupted.'}", file=sys.stderr)
        return 130
    except RecordUnavailable as e:  # which database did not open, and why: no driver traceback
        print(f"dxassist: {e}", file=sys.stderr)
        return 3
    except RecordError as e:  # the record failed (locked, full, refused): its messages hold no patient data
        print(f"dxassist: {e}", file=sys.stderr)
        return 3
    return status


if __name__ == "__main__":
    sys.exit(main())
