"""The ``dxassist`` command line (console script ``dxassist = inference.cli:main``).

``bootstrap`` and ``train`` load ``training.cli`` by name only when they run, so a server install
without torch or the training code still has every other subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import inference  # noqa: F401  (first: switches ONNX Runtime and MLflow telemetry off)
from inference.errors import InferenceError
from inference.observability._phi_guard import QuietThirdParty, install_process_guard

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.security import Principal
    from inference.services._model_decisions import Decision
    from model_registry import ModelSummary, RegisteredVersion

_KEY_FIGURES = ("val_macro_auroc", "val_auroc")
_ROLES_HELP = "radiologist, clinician, pacs, ml_engineer, auditor or admin"


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
        _fmt_figures(dict(version.metrics)),
    ]
    return row


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
    _check_database_drivers(settings)
    return settings


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


# -- subcommands ------------------------------------------------------------------------------------


def unservable_champions(settings: Settings) -> dict[str, str]:
    """Served names whose champion this server cannot load, each with one line saying why.

    Each champion is fetched into the cache and loaded by ``inference.runtime.serving_problem``, the
    server's own loader: a ``var/`` trained before a change of the ONNX contract (e.g. the imaging
    model's ``ood`` output) is found here rather than by ``dxassist serve``.

    Raises:
        model_registry.RegistryError: The registry cannot be asked.
    """
    from inference.runtime import IMAGING_MODEL, TRIAGE_MODEL
    from model_registry import CHAMPION

    client = _registry(settings)
    found: dict[str, str] = {}
    for name in (IMAGING_MODEL, TRIAGE_MODEL):
        version = client.resolve(name, CHAMPION)
        if version is None:
            continue
        problem = serving_problem_of(settings, client, name)
        if problem is not None:
            found[name] = (
                f"{name}: champion version {version} cannot be served by this version of dxassist: {problem}"
            )
    return found


def serving_problem_of(settings: Settings, client: Any, name: str, version: str | None = None) -> str | None:
    """Why this server cannot load ``version`` of ``name`` (its champion when ``None``); ``None`` when it
    loads or ``name`` is no served model.

    The champion is fetched into the local model cache, a given version into a scratch folder, and loaded
    by ``inference.runtime.serving_problem`` (used by ``bootstrap``, ``registry promote`` and ``rollback``).

    Raises:
        model_registry.RegistryError: The registry cannot be asked, has no such version, or its file does
            not match its sha256 (``IntegrityError``).
    """
    from inference.runtime import IMAGING_MODEL, TRIAGE_MODEL, serving_problem
    from model_registry import CHAMPION, ModelCache

    kinds: dict[str, Literal["imaging", "triage"]] = {IMAGING_MODEL: "imaging", TRIAGE_MODEL: "triage"}
    kind = kinds.get(name)
    if kind is None:
        return None
    if version is None:
        return serving_problem(ModelCache(settings.model_cache).fetch(name, CHAMPION, client=client), kind)
    # A candidate is judged from a scratch copy: the server's cache (and its aliases.json) is left alone.
    with tempfile.TemporaryDirectory(prefix="dxassist-check-") as scratch:
        return serving_problem(ModelCache(Path(scratch)).fetch_version(name, version, client=client), kind)


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    from inference.services._model_decisions import AuditedMoves, DecisionNotAudited

    settings = _settings()
    training_cli = _training_cli()
    subject = _operator_subject(args)
    unservable = unservable_champions(settings)
    for line in unservable.values():
        print(f"{line} A new version is trained to replace it (the old one stays in the registry).")
    # Opened at the first move only (every champion in place: not at all). A first bootstrap makes the
    # home, its record included: no note about a new record.
    moves = AuditedMoves(lambda: _open_decision_record(settings, note_new=False), subject)
    try:
        results = training_cli.bootstrap(
            settings, profile=args.profile, echo=print, unservable=frozenset(unservable), moves=moves
        )
    except (training_cli.TrainingUnavailable, training_cli.TrainingConfigError) as e:
        raise CliError(str(e), status=2) from e
    except DecisionNotAudited as e:
        raise CliError(str(e), status=3 if e.changed else 1) from e
    finally:
        moves.close()
        for action, made in moves.made:  # also when a later model failed: these moves happened
            print(_audited_line(action, subject, made))
    print()
    rows = [
        [r.name, r.version, r.action, (r.sha256 or "-")[:12], _fmt_figures(r.metrics), f"{r.seconds:.1f}"]
        for r in results
    ]
    print(format_table(["MODEL", "CHAMPION", "ACTION", "SHA256", "KEY METRICS", "SECONDS"], rows))
    print(f"\nModels are cached in {settings.model_cache}; start the API with `dxassist serve`.")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from inference.services._model_decisions import AuditedMoves, DecisionNotAudited

    settings = _settings()
    training_cli = _training_cli()
    missing = training_cli.missing_train_extra()
    if missing:  # before a run folder is made or anything printed
        raise CliError(training_cli.train_extra_message(missing), status=2)
    moves = None
    if args.register:  # ``train`` opens the record before training: no trail, no run to throw away
        moves = AuditedMoves(lambda: _open_decision_record(settings), _operator_subject(args))
    try:
        result = training_cli.train(
            settings,
            kind=args.kind,
            profile=args.profile,
            dataset=args.dataset,
            data=args.data,
            register=args.register,
            config_path=args.config,
            out_dir=args.out,
            echo=print,
            moves=moves,
        )
    except (training_cli.TrainingUnavailable, training_cli.TrainingConfigError) as e:
        raise CliError(str(e), status=2) from e
    except DecisionNotAudited as e:
        raise CliError(str(e), status=3 if e.changed else 1) from e
    finally:
        if moves is not None:
            moves.close()
    outcome = result.outcome
    figures = {k: v for k, v in outcome.metrics.items() if k.startswith(("val_", "test_macro", "test_auroc"))}
    rows = [[k, _number(v)] for k, v in sorted(figures.items()) if isinstance(v, int | float)]
    print()
    print(format_table(["METRIC", "VALUE"], rows))
    print(f"\nWork folder: {result.out_dir}")
    if result.registered is None:
        print("Not registered (add --register to register it as challenger).")
    else:
        print(
            f"Registered {result.registered.name} version {result.registered.version} as challenger; "
            f"`dxassist registry promote {result.registered.name} {result.registered.version}` runs the gate."
        )
    if moves is not None:
        for action, made in moves.made:
            print(_audited_line(action, moves.subject, made))
    return 0


def _cmd_registry_list(args: argparse.Namespace) -> int:
    models: list[ModelSummary] = _registry(_settings()).list_models()
    if not models:
        print("The registry holds no model yet; run `dxassist bootstrap`.")
        return 0
    rows = [_version_row(v, with_name=True) for m in models for v in m.versions]
    print(format_table(["NAME", "VERSION", "ALIASES", "SHA256", "CREATED", "PARITY", "KEY METRICS"], rows))
    return 0


def _cmd_registry_show(args: argparse.Namespace) -> int:
    summary: ModelSummary = _registry(_settings()).show(args.name)
    print(f"Model:    {summary.name}")
    if summary.description:
        print(f"About:    {summary.description}")
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(summary.aliases.items())) or "none"
    print(f"Aliases:  {aliases}")
    print()
    rows = [
        [*_version_row(v, with_name=False)[:5], v.dataset or "-", (v.git_commit or "-")[:12]]
        for v in summary.versions
    ]
    print(format_table(["VERSION", "ALIASES", "SHA256", "CREATED", "PARITY", "DATASET", "COMMIT"], rows))
    shown = summary.versions[:6]
    figures = sorted({k for v in shown for k in v.metrics})
    if figures:
        print("\nValidation figures compared by the promotion gate:")
        table = [[f, *(_maybe(v.metrics.get(f)) for v in shown)] for f in figures]
        print(format_table(["FIGURE", *(f"v{v.version}" for v in shown)], table))
    return 0


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


def _cmd_registry_promote(args: argparse.Namespace) -> int:
    from inference._compare_cli import promotion_evidence
    from inference.services._model_decisions import (
        PROMOTE,
        DecisionNotAudited,
        VersionUnservable,
        promote_model,
    )

    settings = _settings()
    subject = _operator_subject(args)
    client = _registry(settings)
    record = _open_decision_record(settings)
    try:
        made, decision = promote_model(
            record=record,
            registry=client,
            name=args.name,
            version=args.version,
            subject=subject,
            evidence=promotion_evidence(settings, client, args.name, args.version),
            min_shadow_studies=settings.registry.gate_min_shadow_studies,
            min_reader_verdicts=settings.registry.gate_min_reader_verdicts,
            serving_problem=lambda name, version: serving_problem_of(settings, client, name, version),
        )
    except VersionUnservable as e:
        raise CliError(f"promotion refused. {e}") from e
    except DecisionNotAudited as e:
        raise CliError(str(e), status=3 if e.changed else 1) from e
    finally:
        record.close()
    print(decision.reason)
    if decision.comparisons:
        rows: list[list[object]] = [
            [c.figure, _maybe(c.champion), _maybe(c.candidate), "ok" if c.passed else "FAIL"]
            for c in decision.comparisons
        ]
        print(format_table(["FIGURE", "CHAMPION", "CANDIDATE", "GATE"], rows))
    if decision.evidence:
        rows = [[c.figure, c.value, c.required, "ok" if c.passed else "FAIL"] for c in decision.evidence]
        print("Evidence from live traffic (shadow scoring beside the champion):")
        print(format_table(["FIGURE", "FOUND", "REQUIRED", "GATE"], rows))
    print(f"{args.name}: champion is now version {decision.version}.")
    print(_audited_line(PROMOTE, subject, made))
    return 0


def _cmd_registry_rollback(args: argparse.Namespace) -> int:
    from inference.services._model_decisions import (
        ROLLBACK,
        DecisionNotAudited,
        VersionUnservable,
        rollback_model,
    )

    settings = _settings()
    subject = _operator_subject(args)
    client = _registry(settings)
    record = _open_decision_record(settings)
    try:
        made = rollback_model(
            record=record,
            registry=client,
            name=args.name,
            subject=subject,
            serving_problem=lambda name, version: serving_problem_of(settings, client, name, version),
        )
    except VersionUnservable as e:
        raise CliError(f"rollback refused. {e}") from e
    except DecisionNotAudited as e:
        raise CliError(str(e), status=3 if e.changed else 1) from e
    finally:
        record.close()
    print(f"{args.name}: champion is now version {made.version} again (was version {made.previous}).")
    print(_audited_line(ROLLBACK, subject, made))
    return 0


def _cmd_registry_report(args: argparse.Namespace) -> int:
    try:
        report = importlib.import_module("training.report")
    except ImportError as e:
        raise CliError(f"The report needs the training package, not installed here ({e.name or e}).") from e
    names = args.names or list(report.SERVED)
    print(report.report(_registry(_settings()), names, alias=args.alias), end="")
    return 0


def _cmd_registry_compare(args: argparse.Namespace) -> int:
    from inference._compare_cli import compare_command

    settings = _settings()
    record = _open_record(settings)
    try:
        return compare_command(
            settings,
            record,
            name=args.name,
            champion=args.champion,
            challenger=args.challenger,
            json_output=args.json,
            echo=print,
        )
    finally:
        record.close()


def _check_address(host: str, port: int, *, what: str, option: str) -> None:
    """Refuse to start when ``host:port`` cannot be bound, before anything is loaded.

    Without this, a port another process holds was found only after the record was migrated and the
    models loaded, and reported in a third-party message the log guard withholds ("text withheld"), or
    as a traceback. The probe binds as the servers do (asyncio's ``create_server``: every address the
    host resolves to, ``SO_REUSEADDR``, IPv6 sockets IPv6 only, an address this host lacks skipped; no
    ``SO_REUSEPORT``), so a port held by the workers of another ``dxassist serve --workers N`` (each
    bound with ``SO_REUSEPORT``) is refused too instead of silently shared with them, and an address
    the server can bind is never refused (``--host ::`` beside an IPv4 listener of the port,
    ``localhost`` naming ``::1`` on a host without IPv6).

    Raises:
        CliError: The address is taken, not this host's, or not allowed to this user (exit status 2, as
            ``dxassist listen`` for its own port).
    """
    import errno
    import socket

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(f"{what}: the address {host!r} cannot be resolved ({e.strerror}).", status=2) from e
    bound = 0
    unavailable: OSError | None = None
    for family, kind, proto, _name, address in candidates:
        probe = socket.socket(family, kind, proto)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
            bound += 1
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:  # asyncio skips it too (that family is not enabled)
                unavailable = e
                continue
            if e.errno == errno.EACCES:
                why = "this user may not listen on that port; ports below 1024 need the privilege"
            else:
                why = f"another process may listen there (another {what}?); stop it"
            raise CliError(
                f"{what} cannot listen on {where} ({e.strerror}): {why} or choose another {option}.",
                status=2,
            ) from e
        finally:
            probe.close()
    if not bound:
        reason = unavailable.strerror if unavailable is not None else "no address"
        raise CliError(
            f"{what} cannot listen on {where} ({reason}): it is not an address of this host; choose "
            "another --host.",
            status=2,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _worker_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"a number of processes from 1 to 64, not {value[:20]!r}")
    return count


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    _check_execution_provider(settings)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise CliError("Give both --ssl-certfile and --ssl-keyfile for TLS, or neither.", status=2)
    if not _is_loopback(args.host) and args.ssl_certfile is None:
        print(
            f"Warning: serving on {args.host} without TLS; tokens and health data cross the network in "
            "clear. Use --ssl-certfile/--ssl-keyfile or a TLS-terminating proxy.",
            file=sys.stderr,
        )
    _check_address(args.host, args.port, what="dxassist serve", option="--port")
    try:
        from inference.api import serve
    except ImportError as e:
        raise CliError(f"The HTTP API cannot be loaded ({e}).") from e
    from inference.api._workers import ServerNotStarted

    # inference.api.serve switches uvicorn's access log off: it would log raw URLs with identifiers.
    try:
        serve(
            settings,
            host=args.host,
            port=args.port,
            ssl_certfile=str(args.ssl_certfile) if args.ssl_certfile else None,
            ssl_keyfile=str(args.ssl_keyfile) if args.ssl_keyfile else None,
            log_level=args.log_level,
            workers=args.workers,
        )
    except ServerNotStarted as e:
        raise CliError(str(e), status=3) from e  # uvicorn's status for a server that could not start
    return 0


def _token_id(value: str) -> str:
    # As the token carries it: ours are hex, an identity provider's may hold dashes, dots, underscores.
    if not 0 < len(value) <= 64 or not value.isascii() or not value.isprintable() or " " in value:
        raise argparse.ArgumentTypeError(
            "a token id is 1 to 64 ASCII characters without spaces (from `token issue`, or the jti claim of "
            "the identity provider's token)"
        )
    return value


def _token_subject(value: str) -> str:
    if not value.strip() or len(value) > 128 or not value.isprintable():
        raise argparse.ArgumentTypeError("a subject is 1 to 128 printable characters")
    return value


def _terminal_user() -> str:
    """Who runs this command, for the audit trail: ``cli:<the terminal's user>``."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _cmd_token_issue(args: argparse.Namespace) -> int:
    settings = _settings()
    from inference.security import issue_token, own_token

    try:
        token = issue_token(
            settings, subject=args.subject, role=args.role, facility=args.facility, ttl=args.ttl
        )
    except ValueError as e:
        raise CliError(str(e), status=2) from e
    issued = own_token(settings, token)
    lifetime = settings.security.token_ttl_seconds if args.ttl is None else args.ttl
    # A credential handed out is on the trail before anyone can use it: who, for whom, which id.
    record = _open_record(settings)
    try:
        record.audit.append(
            subject=_terminal_user(), role="admin", facility=None, action="token:issue",
            resource_type="Token", resource_id=_issued_line(issued),
            patient_id=None, outcome="success", client=None,
        )  # fmt: skip
    finally:
        record.close()
    print(token)
    print(
        f"token id (jti) {issued.token_id} for {issued.subject} ({issued.role}), valid {lifetime} s; "
        f"revoke it with `dxassist token revoke --jti {issued.token_id}`.",
        file=sys.stderr,
    )
    return 0


def _issued_line(issued: Principal) -> str:
    """What a ``token:issue`` entry names (its resource id, 128 characters): the token's id, role and
    facility first (what a security officer sorts by), then as much of the subject as fits."""
    head = f"jti:{issued.token_id} role:{issued.role} facility:{issued.facility or '-'} sub:"
    return (head + issued.subject)[:128]


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from inference.record import AuditIn

    settings = _settings()
    if (args.jti is None) == (args.subject is None):
        raise CliError("Give --jti ID (one token) or --subject NAME (every token of it issued so far).", 2)
    reason = args.reason.strip() if args.reason else None
    if reason is not None and (len(reason) > 500 or not reason.isprintable()):
        raise CliError("--reason: at most 500 printable characters.", status=2)
    from inference.services._revocations import CLOCK_SKEW

    now = datetime.now(UTC)
    record = _open_record(settings)
    try:
        record.tokens.revoke(
            jti=args.jti,
            subject=args.subject,
            now=now,
            reason=reason,
            audit=AuditIn(subject=_terminal_user(), role="admin", facility=None, action="token:revoke"),
        )
    finally:
        record.close()
    what = (
        f"token {args.jti}"
        if args.jti
        else f"every token of {args.subject} issued until now (and in the next {CLOCK_SKEW.seconds} s: "
        "issuers' clocks may be that far ahead); a new token for it works if issued from "
        # The first whole second after the cut-off: a token's iat is in whole seconds.
        f"{(now + CLOCK_SKEW).replace(microsecond=0) + timedelta(seconds=1):%Y-%m-%dT%H:%M:%SZ} on"
    )
    print(f"revoked {what}; servers refuse it within seconds (audited token:revoke).")
    return 0


def _cmd_token_unrevoke(args: argparse.Namespace) -> int:
    from inference.record import AuditIn

    if (args.jti is None) == (args.subject is None):
        raise CliError("Give --jti ID or --subject NAME (as `token revocations` lists it).", 2)
    record = _open_record(_settings())
    try:
        taken_back = record.tokens.unrevoke(
            jti=args.jti,
            subject=args.subject,
            audit=AuditIn(subject=_terminal_user(), role="admin", facility=None, action="token:unrevoke"),
        )
    finally:
        record.close()
    what = f"token {args.jti}" if args.jti else f"the tokens of {args.subject}"
    if not taken_back:
        raise CliError(f"No revocation of {what} to take back (`token revocations` lists them).", 1)
    print(
        f"took back {taken_back} revocation(s) of {what}; servers accept it within seconds "
        "(audited token:unrevoke)."
    )
    return 0


def _cmd_token_revocations(args: argparse.Namespace) -> int:
    record = _open_record(_settings())
    try:
        rows = record.tokens.listing()
    finally:
        record.close()
    print(
        format_table(
            ["revoked at", "token id", "subject (issued until)", "by", "reason"],
            [
                [
                    r.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    r.jti or "-",
                    f"{r.subject} ({r.issued_until:%Y-%m-%dT%H:%M:%SZ})"
                    if r.subject and r.issued_until
                    else "-",
                    r.revoked_by,
                    r.reason or "",
                ]
                for r in rows
            ],
        )
    )
    return 0


def _cmd_listen(args: argparse.Namespace) -> int:
    settings = _settings()
    _check_execution_provider(settings)
    from inference.dimse import CannotListen, run_listener

    try:
        run_listener(
            settings, ae_title=args.ae_title, port=args.port, host=args.host, metrics_port=args.metrics_port
        )
    except CannotListen as e:
        raise CliError(str(e), status=2) from e
    return 0


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


def _cmd_user(args: argparse.Namespace) -> int:
    from inference._cli_commands import user_command

    try:
        return user_command(_settings(), args)
    except ValueError as e:
        raise CliError(str(e), status=2) from e


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
        items = list_dead_letters(record=record, home=settings.listener_spool, kind=args.kind)
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


# -- parser -----------------------------------------------------------------------------------------


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
    except KeyboardInterrupt:
        print("dxassist: interrupted.", file=sys.stderr)
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
