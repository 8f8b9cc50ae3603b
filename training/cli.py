"""The training side of the ``dxassist`` command line: ``train`` and ``bootstrap``.

``inference.cli`` loads this module by name only when one of these subcommands runs, so a server
install needs neither torch nor the training code. Nothing heavy is imported at module level either:
``bootstrap`` with every champion in place finishes without importing torch.

Every alias these commands move goes through an :class:`AliasMoves`: ``inference.cli`` passes one that
writes each move to the patient record's audit trail (``inference.services``, which training does not
import); called as a library without one, the registry is moved directly, unaudited.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from model_registry import (
    CHALLENGER,
    CHAMPION,
    GateDecision,
    ModelCache,
    PromotionRefused,
    RegisteredVersion,
    RegistryClient,
)
from training.errors import TrainingError

if TYPE_CHECKING:
    from inference.config import Settings
    from training.pipeline import TrainingOutcome

_log = logging.getLogger(__name__)

Kind = Literal["imaging", "triage"]
Echo = Callable[[str], None]

#: Served models, in the order bootstrap prepares them.
SERVED_MODELS: tuple[tuple[str, Kind], ...] = (("cxr-findings", "imaging"), ("vitals-triage", "triage"))
MODEL_NAMES: dict[Kind, str] = {"imaging": "cxr-findings", "triage": "vitals-triage"}
_PIPELINE_NAMES = ("ImagingConfig", "train_imaging", "TriageConfig", "train_triage")


class TrainingUnavailable(TrainingError, RuntimeError):
    """The training extras (torch, training.pipeline) are not installed in this environment."""


class TrainingConfigError(TrainingError, ValueError):
    """The profile, flags or YAML file do not make a valid training config."""


@dataclass(frozen=True)
class BootstrapResult:
    """What bootstrap did for one served model.

    Attributes:
        name: Registered model name.
        action: ``kept`` (a champion existed), ``promoted`` (an existing challenger became champion)
            ``trained`` (a new version was trained, registered and promoted) or ``replaced`` (the same,
            in place of a champion the server cannot load).
        version: The champion version afterwards.
        sha256: sha256 of the champion's ONNX file.
        metrics: The champion's gate figures.
        seconds: Time spent on this model.
        cached: Path of the champion in the local model cache.
    """

    name: str
    action: str
    version: str
    sha256: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cached: Path | None = None


@dataclass(frozen=True)
class TrainResult:
    """A finished ``dxassist train`` run: the outcome and, with ``--register``, the new version."""

    outcome: TrainingOutcome
    registered: RegisteredVersion | None
    out_dir: Path


class AliasMoves(Protocol):
    """How ``train --register`` and ``bootstrap`` move aliases (``inference.cli`` passes audited ones)."""

    def prepare(self) -> None:
        """Called before a training run whose result will move an alias: fail now rather than after it."""
        ...

    def challenger(self, client: RegistryClient, name: str, version: str) -> None:
        """Point ``challenger`` at ``version`` of ``name``."""
        ...

    def promote(
        self, client: RegistryClient, name: str, version: str, *, champion_unservable: bool = False
    ) -> GateDecision:
        """Run the promotion gate and move ``champion`` to ``version`` (raises ``PromotionRefused``)."""
        ...


class DirectMoves:
    """Moves the registry's aliases directly, unaudited: for library use (tests); the ``dxassist`` commands
    pass audited moves instead."""

    def prepare(self) -> None:
        pass

    def challenger(self, client: RegistryClient, name: str, version: str) -> None:
        client.set_alias(name, CHALLENGER, version)

    def promote(
        self, client: RegistryClient, name: str, version: str, *, champion_unservable: bool = False
    ) -> GateDecision:
        return client.promote(name, version, champion_unservable=champion_unservable)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def git_commit(start: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout holding the code, or ``"unknown"``."""
    folder = start or Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


def run_dir(settings: Settings, name: str) -> Path:
    """A fresh work folder ``$DXASSIST_HOME/runs/<name>/<UTC timestamp>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = settings.resolved_home / "runs" / name / stamp
    suffix = 1
    while folder.exists():  # two runs in the same second get distinct folders
        folder = folder.with_name(f"{stamp}-{suffix}")
        suffix += 1
    folder.mkdir(parents=True)
    return folder


# The modules of the ``train`` extra (pyproject.toml); torch is imported lazily by the pipeline, so
# without this check a server install would fail deep inside training with a traceback.
_TRAIN_EXTRA_MODULES = ("torch", "onnxscript", "tqdm", "matplotlib")


def missing_train_extra() -> list[str]:
    """The modules of the ``train`` extra that cannot be imported here (empty when training can run)."""
    missing = []
    for name in _TRAIN_EXTRA_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # a broken or blocked module counts as missing
            missing.append(name)
    try:
        # The base install has the MLflow client only (mlflow-skinny); logging a model needs the full one.
        importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        missing.append("mlflow")
    return missing


def train_extra_message(missing: Collection[str]) -> str:
    """The one line that tells an operator how to get training (no traceback)."""
    return (
        f"Training needs the 'train' extra, not installed here (missing: {', '.join(missing)}): "
        "pip install 'dxassist[train]' (in a checkout: pip install -e '.[train]'; PyTorch CPU is enough)."
    )


def _pipeline() -> Any:
    missing = missing_train_extra()
    if missing:
        raise TrainingUnavailable(train_extra_message(missing))
    try:
        import training.pipeline as pipeline
    except ImportError as e:
        raise TrainingUnavailable(train_extra_message([e.name or str(e)])) from e
    missing = [n for n in _PIPELINE_NAMES if not hasattr(pipeline, n)]
    if missing:
        raise TrainingUnavailable(
            f"training.pipeline does not provide {', '.join(missing)}; this checkout's training code is "
            "incomplete."
        )
    return pipeline


def _config(cls: Any, profile: str, overrides: dict[str, Any], yaml_path: Path | None) -> Any:
    """Resolve a training config: ``from_profile`` when the class has one, else its constructor."""
    try:
        if hasattr(cls, "from_profile"):
            return cls.from_profile(profile, yaml_path=yaml_path, **overrides)
        if yaml_path is not None:
            raise TrainingConfigError(
                f"{cls.__name__} does not read YAML files; pass the values as flags instead."
            )
        return cls(profile=profile, **{k: v for k, v in overrides.items() if v is not None})
    except (TypeError, ValueError) as e:
        if isinstance(e, TrainingConfigError):
            raise
        raise TrainingConfigError(f"The {cls.__name__} could not be built: {e}") from e


def run_training(
    kind: Kind,
    *,
    profile: str,
    out_dir: Path,
    dataset: str | None = None,
    data: Path | None = None,
    config_path: Path | None = None,
    progress: bool | None = None,
) -> TrainingOutcome:
    """Train one model through ``training.pipeline`` and return its outcome.

    Raises:
        TrainingUnavailable: torch or the training pipeline is not installed.
        TrainingConfigError: The profile, flags or YAML file are not a valid config.
    """
    pipeline = _pipeline()
    if progress is None:
        progress = sys.stderr.isatty()  # progress bars only for a person watching, not in logs
    overrides: dict[str, Any] = {"out_dir": out_dir, "dataset": dataset, "data": data}
    if kind == "imaging":
        cfg = _config(pipeline.ImagingConfig, profile, {**overrides, "progress": progress}, config_path)
        outcome: TrainingOutcome = pipeline.train_imaging(cfg)
    else:
        triage_cls = pipeline.TriageConfig
        if "progress" in getattr(triage_cls, "__dataclass_fields__", {}):
            overrides["progress"] = progress
        cfg = _config(triage_cls, profile, overrides, config_path)
        outcome = pipeline.train_triage(cfg)
    return outcome


def register_outcome(
    client: RegistryClient, outcome: TrainingOutcome, *, alias: str | None = CHALLENGER
) -> RegisteredVersion:
    """Log and register a training outcome as a new version (``challenger`` by default, ``None``: no
    alias)."""
    return client.log_and_register(
        name=outcome.model_name,
        onnx_path=outcome.onnx_path,
        params=outcome.params,
        metrics=outcome.metrics,
        artifacts=outcome.artifacts,
        model_card=outcome.model_card,
        dataset=outcome.dataset,
        parity_passed=outcome.parity_passed,
        parity_max_abs_diff=outcome.parity_max_abs_diff,
        sha256=outcome.sha256,
        git_commit=git_commit(),
        alias=alias,
        history=outcome.history,
        dataset_digest=outcome.dataset_digest,
    )


def train(
    settings: Settings,
    *,
    kind: Kind,
    profile: str = "quick",
    dataset: str | None = None,
    data: Path | None = None,
    register: bool = False,
    config_path: Path | None = None,
    out_dir: Path | None = None,
    echo: Echo = _stdout,
    moves: AliasMoves | None = None,
) -> TrainResult:
    """``dxassist train``: train, evaluate, export and optionally register as ``challenger``.

    With ``register`` the new version is registered without an alias, then ``moves`` points
    ``challenger`` at it (unaudited :class:`DirectMoves` when not given). Without it nothing moves.
    """
    name = MODEL_NAMES[kind]
    moves = moves if moves is not None else DirectMoves()
    if register:
        moves.prepare()
    folder = out_dir or run_dir(settings, name)
    echo(f"Training {name} ({profile} profile) in {folder}.")
    dataset_error = _pipeline().DatasetError
    try:
        outcome = run_training(
            kind, profile=profile, out_dir=folder, dataset=dataset, data=data, config_path=config_path
        )
    except dataset_error as e:  # a data set the adapter cannot read: one sentence, not a traceback
        raise TrainingConfigError(f"The data set cannot be used: {e}") from e
    echo(
        f"Exported {outcome.onnx_path} (sha256 {outcome.sha256[:12]}, "
        f"parity passed: {outcome.parity_passed})."
    )
    registered = None
    if register:
        client = RegistryClient(settings.tracking_uri, settings.artifact_root)
        registered = _register_challenger(client, outcome, moves)
        echo(f"Registered {name} version {registered.version} as {CHALLENGER}.")
    return TrainResult(outcome=outcome, registered=registered, out_dir=folder)


def bootstrap(
    settings: Settings,
    *,
    profile: str = "quick",
    echo: Echo = _stdout,
    unservable: Collection[str] = (),
    moves: AliasMoves | None = None,
) -> list[BootstrapResult]:
    """``dxassist bootstrap``: make sure every served model has a ``champion``, then cache it.

    For each served model without a champion: an existing challenger that passes the promotion gate
    is promoted; otherwise a model is trained with ``profile``, registered as challenger and promoted.
    A second run finds the champions and only refreshes the local cache (seconds, no torch).

    Args:
        settings: where the registry and the cache are.
        profile: training profile for the models that must be trained.
        echo: where progress lines go.
        unservable: served names whose champion the server cannot load (``inference.cli`` checks them
            with the server's own loader): a new version is trained and promoted without comparing it
            with that champion, which stays in the registry.
        moves: how ``challenger`` and ``champion`` move (``inference.cli`` passes audited moves;
            unaudited :class:`DirectMoves` when not given).

    Raises:
        model_registry.RegistryError: The registry cannot be reached, or a freshly trained model was
            refused by the gate.
        TrainingUnavailable: A model must be trained but training is not installed.
    """
    client = RegistryClient(settings.tracking_uri, settings.artifact_root)
    cache = ModelCache(settings.model_cache)
    moves = moves if moves is not None else DirectMoves()
    results: list[BootstrapResult] = []
    for name, kind in SERVED_MODELS:
        started = time.monotonic()
        action = "kept"
        champion = client.resolve(name, CHAMPION)
        replacing = champion is not None and name in unservable
        if replacing:
            echo(f"{name}: replacing champion version {champion}; training with the {profile} profile.")
            champion = None
        elif champion is not None:
            echo(f"{name}: champion is version {champion}; nothing to train.")
        else:
            champion = _promote_waiting_challenger(client, moves, name, echo)
            action = "promoted" if champion is not None else action
        if champion is None:
            if not replacing:
                echo(f"{name}: no champion; training with the {profile} profile (this takes a few minutes).")
            _pipeline()  # installed? (says so in one line) before the record is opened
            moves.prepare()  # the trail can take the moves before minutes of training, not after
            outcome = run_training(kind, profile=profile, out_dir=run_dir(settings, name))
            registered = _register_challenger(client, outcome, moves)
            echo(
                f"{name}: registered version {registered.version} as {CHALLENGER}; "
                "running the promotion gate."
            )
            decision = moves.promote(client, name, registered.version, champion_unservable=replacing)
            echo(f"{name}: {decision.reason}")
            champion, action = registered.version, "replaced" if replacing else "trained"
        version = client.get_version(name, champion)
        local = cache.fetch(name, CHAMPION, client=client)
        results.append(
            BootstrapResult(
                name=name,
                action=action,
                version=version.version,
                sha256=version.sha256,
                metrics=dict(version.metrics),
                seconds=time.monotonic() - started,
                cached=local.path,
            )
        )
    return results


def _register_challenger(
    client: RegistryClient, outcome: TrainingOutcome, moves: AliasMoves
) -> RegisteredVersion:
    """Register a version without an alias, then let ``moves`` point ``challenger`` at it."""
    registered = register_outcome(client, outcome, alias=None)
    moves.challenger(client, registered.name, registered.version)
    return client.get_version(registered.name, registered.version)


def _promote_waiting_challenger(
    client: RegistryClient, moves: AliasMoves, name: str, echo: Echo
) -> str | None:
    """Promote a challenger left by an interrupted bootstrap, rather than training again."""
    challenger = client.resolve(name, CHALLENGER)
    if challenger is None:
        return None
    try:
        decision = moves.promote(client, name, challenger)
    except PromotionRefused as e:
        echo(f"{name}: challenger version {challenger} was not promoted: {e.reason}")
        return None
    echo(f"{name}: {decision.reason}")
    return challenger
