"""``dxassist bootstrap``, ``train`` and ``registry``: train, register, inspect, promote and roll back the
served models (every move of an alias audited), and whether this server can load a champion."""

from __future__ import annotations

import argparse
import importlib
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from inference._common_cli import (
    CliError,
    _audited_line,
    _dataset_digest,
    _fmt_figures,
    _maybe,
    _number,
    _open_decision_record,
    _open_record,
    _operator_subject,
    _registry,
    _settings,
    _training_cli,
    _version_row,
    format_table,
)

if TYPE_CHECKING:
    from inference.config import Settings
    from model_registry import ModelSummary


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
    header = ["NAME", "VERSION", "ALIASES", "SHA256", "CREATED", "PARITY", "DATASET SHA256", "KEY METRICS"]
    print(format_table(header, rows))
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
        [
            *_version_row(v, with_name=False)[:5],
            v.dataset or "-",
            _dataset_digest(v),
            (v.git_commit or "-")[:12],
        ]
        for v in summary.versions
    ]
    header = ["VERSION", "ALIASES", "SHA256", "CREATED", "PARITY", "DATASET", "DATASET SHA256", "COMMIT"]
    print(format_table(header, rows))
    shown = summary.versions[:6]
    figures = sorted({k for v in shown for k in v.metrics})
    if figures:
        print("\nValidation figures compared by the promotion gate:")
        table = [[f, *(_maybe(v.metrics.get(f)) for v in shown)] for f in figures]
        print(format_table(["FIGURE", *(f"v{v.version}" for v in shown)], table))
    return 0


def _champion_cell(value: float, previous_champion: str | None) -> str:
    """The champion's column of the gate's table: the gate records a figure the champion lacks as NaN
    (an absolute check, such as the OOD floor), which a person reads as "no champion" or "-"."""
    if previous_champion is None:
        return "no champion"
    return "-" if math.isnan(value) else _maybe(value)


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
            [
                c.figure,
                _champion_cell(c.champion, decision.previous_champion),
                _maybe(c.candidate),
                "ok" if c.passed else "FAIL",
            ]
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
