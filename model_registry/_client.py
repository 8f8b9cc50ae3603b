"""RegistryClient: log, register, inspect, alias, promote and roll back models in MLflow."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from model_registry._errors import NotFound, PromotionRefused, RegistryError
from model_registry._evidence_gate import apply_evidence
from model_registry._gate import DEFAULT_TOLERANCE, evaluate_gate, is_gate_tag_figure
from model_registry._mlflow import check_alias, check_name, check_version, import_mlflow, translated
from model_registry._register import CURVE_PREFIX, Artifacts, experiment_id, gate_tags, log_run
from model_registry._relocate import relocate_store
from model_registry._types import GateDecision, ModelSummary, RegisteredVersion, ShadowEvidence

_log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_HISTORY_TAG = "champion_history"
_HISTORY_MAX = 100
_LOCAL_SCHEMES = frozenset({"", "file", "sqlite", "postgresql", "mysql", "mssql"})


class RegistryClient:
    """Talks to one MLflow tracking store and model registry.

    Nothing is imported or opened until the first call, so creating a client is free. Every MLflow,
    database or network failure comes out as a :class:`RegistryError` (``RegistryUnreachable`` when
    the store did not answer).

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...``, ``postgresql://...``, ``http://...``).
        artifact_root: Where experiments created here keep artifacts when the store is a local
            database; ignored for an MLflow server, which decides on its own.
    """

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self._client: Any = None
        scheme = urlparse(tracking_uri).scheme.split("+")[0]
        self._local = scheme in _LOCAL_SCHEMES
        if scheme in ("http", "https"):
            # MLflow's defaults retry for minutes; a server polling for a new champion must not hang.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

    def __repr__(self) -> str:
        return f"RegistryClient(tracking_uri={_redact(self.tracking_uri)!r})"

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def mlflow_client(self) -> Any:
        """The underlying ``mlflow.MlflowClient`` (created on first use)."""
        if self._client is None:
            with translated("opening the MLflow store"):
                mlflow = import_mlflow()
                if self.tracking_uri.startswith("sqlite:///"):
                    # SQLite does not create missing folders; the embedded store lives in DXASSIST_HOME.
                    db = Path(self.tracking_uri.removeprefix("sqlite:///"))
                    db.parent.mkdir(parents=True, exist_ok=True)
                    if self.artifact_root is not None:
                        # A copied or moved DXASSIST_HOME reads and writes its own artifacts only.
                        relocate_store(db, self.artifact_root)
                self._client = mlflow.MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
        return self._client

    def _artifact_location(self, name: str) -> str | None:
        if not self._local or self.artifact_root is None:
            return None
        folder = self.artifact_root.expanduser().resolve() / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder.as_uri()

    # -- logging and registration ------------------------------------------------------------------

    def log_and_register(
        self,
        *,
        name: str,
        onnx_path: Path,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        artifacts: Artifacts,
        model_card: str | Path,
        dataset: str,
        parity_passed: bool,
        parity_max_abs_diff: float,
        sha256: str,
        git_commit: str | None = None,
        alias: str | None = CHALLENGER,
        history: Sequence[Mapping[str, Any]] = (),
        dataset_digest: str | None = None,
    ) -> RegisteredVersion:
        """Log a run with its ONNX model and register it as a new version of ``name``.

        The run goes to experiment ``dxassist/<name>`` (artifacts under ``artifact_root``), the ONNX
        file is logged as one file under an MLflow logged model, and the new version is tagged with
        ``sha256``, ``dataset``, ``git_commit``, ``parity_passed``, ``parity_max_abs_diff`` and the
        gate figures (``val_auroc*``) before ``alias`` is pointed at it.

        Args:
            name: Registered model name.
            onnx_path: The exported single-file ONNX model.
            params: Training configuration (nested mappings are flattened).
            metrics: Evaluation figures; finite numbers become MLflow metrics, all go to metrics.json.
            artifacts: Plot or report files (or folders) to attach to the run.
            model_card: Markdown text, or a path to it; stored as ``model_card.md``.
            dataset: One line naming the training/validation data.
            parity_passed: Whether ONNX Runtime matched PyTorch at export.
            parity_max_abs_diff: Largest absolute difference seen in the parity check.
            sha256: sha256 of ``onnx_path`` reported by the export (checked again here).
            git_commit: Source revision; ``"unknown"`` when not given.
            alias: Alias to set on the new version (``challenger`` by default, ``None`` for none).
                ``champion`` is refused: only :meth:`promote` moves it.
            history: One mapping per training epoch (``epoch`` and figures such as ``train_loss``),
                logged as training curves: metric ``epoch/<figure>`` with the epoch as its step.
            dataset_digest: The digest of the data set's content, when it has one; tagged
                ``dataset_sha256``, which the promotion gate compares before the ``dataset`` names.

        Returns:
            The new version.

        Raises:
            IntegrityError: ``onnx_path`` does not hash to ``sha256``.
            RegistryError: MLflow refused or could not be reached.
        """
        check_name(name)
        if alias is not None:
            check_alias(alias)
            if alias == CHAMPION:
                raise RegistryError(
                    "log_and_register does not set 'champion'; register the version, then call promote() "
                    "so the promotion gate runs."
                )
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise RegistryError(f"The ONNX file {onnx_path} does not exist; nothing was registered.")
        commit = git_commit or "unknown"
        version_tags = {
            "sha256": sha256,
            "dataset": dataset,
            "git_commit": commit,
            "parity_passed": "true" if parity_passed else "false",
            "parity_max_abs_diff": repr(float(parity_max_abs_diff)),
            **gate_tags(metrics),
        }
        if dataset_digest:
            version_tags["dataset_sha256"] = dataset_digest
        client = self.mlflow_client
        with translated(f"registering a version of {name}"):
            experiment = experiment_id(client, name, self._artifact_location(name))
            run_id, model_id, location = log_run(
                client,
                experiment=experiment,
                name=name,
                onnx_path=onnx_path,
                params=params,
                metrics=metrics,
                history=history,
                artifacts=artifacts,
                model_card=model_card,
                dataset=dataset,
                sha256=sha256,
                git_commit=commit,
                version_tags=version_tags,
            )
            self._ensure_registered_model(name, dataset)
            # The source is the logged model's storage location, not "models:/<id>": MLflow resolves
            # the latter through the process-wide tracking URI, which may name another store.
            version = client.create_model_version(
                name, source=location, run_id=run_id, tags=version_tags, model_id=model_id
            )
            if alias is not None:
                client.set_registered_model_alias(name, alias, str(version.version))
        _log.info("Registered %s version %s (run %s).", name, version.version, run_id)
        return self.get_version(name, str(version.version))

    def _ensure_registered_model(self, name: str, dataset: str) -> None:
        client = self.mlflow_client
        try:
            client.get_registered_model(name)
            return
        except Exception as e:
            if getattr(e, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                raise
        mlflow = import_mlflow()
        try:
            client.create_registered_model(
                name,
                tags={"dxassist.model_name": name},
                description=f"dxassist model {name}; first version trained on: {dataset}.",
            )
        except mlflow.exceptions.MlflowException as e:
            if getattr(e, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise

    # -- inspection ---------------------------------------------------------------------------------

    def list_models(self) -> list[ModelSummary]:
        """Every registered model with its versions (newest first), sorted by name."""
        client = self.mlflow_client
        with translated("listing registered models"):
            names: list[str] = []
            token: str | None = None
            while True:
                page = client.search_registered_models(max_results=100, page_token=token)
                names.extend(m.name for m in page)
                token = page.token
                if not token:
                    break
        return [self.show(n) for n in sorted(names)]

    def show(self, name: str) -> ModelSummary:
        """One registered model with its versions (newest first) and alias map.

        Raises:
            NotFound: No registered model is called ``name``.
        """
        check_name(name)
        client = self.mlflow_client
        with translated(f"reading model {name}"):
            model = client.get_registered_model(name)
            aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
            found = client.search_model_versions(f"name = '{name}'", max_results=10000)
        versions = sorted(
            (self._version_info(mv, aliases) for mv in found), key=lambda v: int(v.version), reverse=True
        )
        return ModelSummary(
            name=name, versions=tuple(versions), aliases=aliases, description=model.description or None
        )

    def get_version(self, name: str, version: str | int) -> RegisteredVersion:
        """One version of ``name``.

        Raises:
            NotFound: The model or the version does not exist.
        """
        check_name(name)
        version = check_version(version)
        client = self.mlflow_client
        with translated(f"reading version {version} of {name}"):
            mv = client.get_model_version(name, version)
            aliases = {str(k): str(v) for k, v in (client.get_registered_model(name).aliases or {}).items()}
        return self._version_info(mv, aliases)

    def aliases(self, name: str) -> dict[str, str]:
        """Alias → version for ``name``.

        Raises:
            NotFound: No registered model is called ``name``.
        """
        check_name(name)
        with translated(f"reading the aliases of {name}"):
            model = self.mlflow_client.get_registered_model(name)
        return {str(k): str(v) for k, v in (model.aliases or {}).items()}

    def resolve(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or ``None`` if the model or alias does not exist."""
        check_alias(alias)
        try:
            return self.aliases(name).get(alias)
        except NotFound:
            return None

    def download_uri(self, name: str, version: str) -> str:
        """Where the version's logged-model artifacts (``model.onnx``, ``MLmodel``...) are stored."""
        with translated(f"locating the files of version {version} of {name}"):
            return str(self.mlflow_client.get_model_version_download_uri(name, check_version(version)))

    def download_onnx(self, name: str, version: str, dst: Path) -> Path:
        """Download the version's ``model.onnx`` into folder ``dst`` and return its path."""
        uri = self.download_uri(name, version)
        dst.mkdir(parents=True, exist_ok=True)
        with translated(f"downloading version {version} of {name}"):
            mlflow = import_mlflow()
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri.rstrip('/')}/model.onnx",
                dst_path=str(dst),
                tracking_uri=self.tracking_uri,
            )
        return Path(local)

    def run_metrics(self, name: str, version: str | int) -> dict[str, float]:
        """The final figures logged on the run that produced ``version`` (training curves left out).

        Raises:
            NotFound: The version does not exist, or it was registered without a run.
        """
        registered = self.get_version(name, version)
        if registered.run_id is None:
            raise NotFound(f"Version {registered.version} of {name} was registered without a run.")
        with translated(f"reading the run of version {registered.version} of {name}"):
            run = self.mlflow_client.get_run(registered.run_id)
        metrics = run.data.metrics or {}
        return {str(k): float(v) for k, v in metrics.items() if not str(k).startswith(CURVE_PREFIX)}

    def training_curve(self, name: str, version: str | int, figure: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of one per-epoch figure (e.g. ``val_loss``) of the run behind ``version``.

        Returns:
            The points in epoch order; empty when the run logged no such curve.

        Raises:
            NotFound: The version does not exist, or it was registered without a run.
        """
        registered = self.get_version(name, version)
        if registered.run_id is None:
            raise NotFound(f"Version {registered.version} of {name} was registered without a run.")
        with translated(f"reading the training curves of version {registered.version} of {name}"):
            points = self.mlflow_client.get_metric_history(registered.run_id, f"{CURVE_PREFIX}{figure}")
        return sorted((int(m.step), float(m.value)) for m in points)

    # -- aliases, gate, rollback --------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` at ``version``. ``champion`` is refused: use :meth:`promote` (the gate).

        Raises:
            NotFound: The version does not exist.
        """
        check_alias(alias)
        if alias == CHAMPION:
            raise RegistryError(
                f"The 'champion' alias of {name} moves only through promote() (which runs the promotion "
                "gate) or rollback(); set_alias accepts any other alias."
            )
        version = self.get_version(name, version).version
        with translated(f"setting alias {alias} of {name}"):
            self.mlflow_client.set_registered_model_alias(name, alias, version)

    def promote(
        self,
        name: str,
        version: str | int,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        champion_unservable: bool = False,
        evidence: ShadowEvidence | None = None,
        min_shadow_studies: int = 0,
        min_reader_verdicts: int = 0,
    ) -> GateDecision:
        """Run the promotion gate and, if it passes, move ``champion`` to ``version``.

        The gate needs a passed parity check and, for every ``val_auroc*`` figure the champion has, a
        candidate value at most ``tolerance`` below it. On success the previous champion is recorded
        (version tag ``previous_champion`` and the model's ``champion_history`` tag) so
        :meth:`rollback` can restore it, and a ``challenger`` alias on the version is removed.

        With ``champion_unservable`` (the caller found that the server refuses the champion, e.g. it
        predates the current ONNX contract) the candidate is judged on its own checks, as a first
        version: a model that cannot be served is no baseline. The old version stays registered.

        With ``min_shadow_studies`` or ``min_reader_verdicts`` above 0 and a champion to compare with,
        the candidate also needs that much ``evidence`` from live traffic (shadow-scored inputs and
        readers' verdicts on them, counted from the patient record by the caller); the counts are shown
        in the decision and recorded on the version as tags ``shadow_studies`` and ``reader_verdicts``.

        Returns:
            The gate's decision (already champion: a passing decision with nothing changed).

        Raises:
            PromotionRefused: The gate refused; ``reason`` names the failing figure.
            NotFound: The model or version does not exist.
        """
        candidate = self.get_version(name, version)
        current = self.aliases(name).get(CHAMPION)
        if current == candidate.version:
            return GateDecision(
                name=name,
                version=candidate.version,
                previous_champion=current,
                passed=True,
                reason=f"Version {candidate.version} of {name} is already the champion; nothing changed.",
                tolerance=tolerance,
            )
        champion = (
            self.get_version(name, current) if current is not None and not champion_unservable else None
        )
        if champion is not None:
            candidate, champion = self._with_run_ood_kinds(candidate), self._with_run_ood_kinds(champion)
        decision = evaluate_gate(candidate, champion, tolerance=tolerance)
        if champion is not None and (evidence is not None or min_shadow_studies or min_reader_verdicts):
            decision = apply_evidence(
                decision,
                evidence,
                min_shadow_studies=min_shadow_studies,
                min_reader_verdicts=min_reader_verdicts,
            )
        if champion_unservable and current is not None and decision.passed:
            decision = dataclasses.replace(
                decision,
                previous_champion=current,
                reason=(
                    f"Version {candidate.version} of {name} replaces version {current}, which this server "
                    "cannot load; it passed its own checks (a model that cannot be served is no baseline)."
                ),
            )
        if not decision.passed:
            _log.warning("Promotion refused: %s", decision.reason)
            raise PromotionRefused(decision.reason, decision)
        client = self.mlflow_client
        with translated(f"promoting version {candidate.version} of {name}"):
            history = self._history(name, current)
            client.set_registered_model_alias(name, CHAMPION, candidate.version)
            if current is not None:
                client.set_model_version_tag(name, candidate.version, "previous_champion", current)
            client.set_model_version_tag(name, candidate.version, "promoted_at", _now())
            if evidence is not None:
                for tag, count in (
                    ("shadow_studies", evidence.shadow_studies),
                    ("reader_verdicts", evidence.reader_verdicts),
                ):
                    client.set_model_version_tag(name, candidate.version, tag, str(count))
            history.append(candidate.version)
            client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history[-_HISTORY_MAX:]))
            if CHALLENGER in candidate.aliases:
                client.delete_registered_model_alias(name, CHALLENGER)
        _log.info("%s", decision.reason)
        return decision

    def rollback_target(self, name: str) -> str:
        """The version :meth:`rollback` would make champion again; nothing moves.

        Raises:
            NotFound: There is no champion, or no earlier champion to return to.
        """
        return self._rollback_plan(name)[1]

    def rollback(self, name: str) -> str:
        """Move ``champion`` back to the version that was champion before the last promotion.

        Returns:
            The version that is champion again.

        Raises:
            NotFound: There is no champion, or no earlier champion to return to.
        """
        current, target, history = self._rollback_plan(name)
        client = self.mlflow_client
        with translated(f"rolling back {name}"):
            client.set_registered_model_alias(name, CHAMPION, target)
            client.set_model_version_tag(name, current, "rolled_back_at", _now())
            client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history[-_HISTORY_MAX:]))
        _log.info("Rolled back %s: champion is version %s again (was %s).", name, target, current)
        return target

    def _rollback_plan(self, name: str) -> tuple[str, str, list[str]]:
        """The current champion, the version a rollback returns to, and the champion history after it."""
        current = self.aliases(name).get(CHAMPION)
        if current is None:
            raise NotFound(f"{name} has no champion, so there is nothing to roll back.")
        history = self._history(name, current)
        target: str | None = None
        if len(history) >= 2 and history[-1] == current:
            target = history[-2]
            history = history[:-1]
        else:
            target = self.get_version(name, current).tags.get("previous_champion")
            history = [*history[:-1], target] if target else history
        if not target:
            raise NotFound(
                f"Champion version {current} of {name} has no earlier champion recorded, so there is "
                "nothing to roll back to."
            )
        self.get_version(name, target)  # the earlier champion must still exist
        return current, target, history

    def _history(self, name: str, current: str | None) -> list[str]:
        """Champion versions in promotion order, ending with the current champion."""
        with translated(f"reading the champion history of {name}"):
            model = self.mlflow_client.get_registered_model(name)
        raw = (model.tags or {}).get(_HISTORY_TAG)
        try:
            history = [str(v) for v in json.loads(raw)] if raw else []
        except (ValueError, TypeError):
            _log.warning("Ignoring an unreadable %s tag on %s.", _HISTORY_TAG, name)
            history = []
        if current is not None and (not history or history[-1] != current):
            history.append(current)  # champion set outside promote(): keep the record consistent
        return history

    def _with_run_ood_kinds(self, version: RegisteredVersion) -> RegisteredVersion:
        """``version`` with its run's per-kind OOD AUROC figures (``ood_auroc_<kind>``) when its tags lack
        them: a version registered before they travelled as tags has them only in its training run, and the
        gate compares the refusal AUROC on the kinds both versions faced (``_calibration_gate``)."""
        metrics = version.metrics
        if (
            "ood_auroc" not in metrics
            or any(k.startswith("ood_auroc_") for k in metrics)
            or not version.run_id
        ):
            return version
        try:
            with translated(f"reading the run of version {version.version} of {version.name}"):
                logged = self.mlflow_client.get_run(version.run_id).data.metrics
        except RegistryError as e:
            _log.warning("No per-kind OOD figures for version %s: %s", version.version, e)
            return version
        kinds = {str(k): float(v) for k, v in logged.items() if str(k).startswith("ood_auroc_")}
        return dataclasses.replace(version, metrics={**metrics, **kinds}) if kinds else version

    @staticmethod
    def _version_info(mv: Any, aliases: Mapping[str, str]) -> RegisteredVersion:
        tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
        version = str(mv.version)
        metrics: dict[str, float] = {}
        for key, value in tags.items():
            if is_gate_tag_figure(key):
                try:
                    metrics[key] = float(value)
                except ValueError:
                    _log.warning("Ignoring non-numeric gate tag %s=%r on version %s.", key, value, version)
        created = (
            datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
        )
        return RegisteredVersion(
            name=str(mv.name),
            version=version,
            run_id=mv.run_id or None,
            sha256=tags.get("sha256"),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            created_at=created,
            dataset=tags.get("dataset"),
            git_commit=tags.get("git_commit"),
            parity_passed=tags.get("parity_passed", "").lower() == "true",
            metrics=metrics,
            tags=tags,
            dataset_digest=tags.get("dataset_sha256"),
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _redact(uri: str) -> str:
    """Hide a password in a database URI before it reaches a log or repr."""
    parsed = urlparse(uri)
    if parsed.password:
        return uri.replace(f":{parsed.password}@", ":***@")
    return uri
