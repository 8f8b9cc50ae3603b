"""Registering versions in a real MLflow SQLite store: tags, aliases, artifacts, listings."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from _registry_testkit import LABELS, Store, build_tiny_cxr

import model_registry
from model_registry import IntegrityError, NotFound, RegistryError


def test_importing_model_registry_switches_telemetry_off() -> None:
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert os.environ["DO_NOT_TRACK"] == "true"


def test_log_and_register_creates_tagged_version_with_alias(store: Store) -> None:
    registered = store.register("cxr-findings")

    assert registered.name == "cxr-findings"
    assert registered.version == "1"
    assert registered.aliases == ("challenger",)
    assert registered.run_id
    assert len(registered.sha256 or "") == 64
    version = store.client.get_version("cxr-findings", 1)
    assert version.tags["sha256"] == registered.sha256
    assert version.tags["dataset"] == "tiny-synthetic (tests)"
    assert version.tags["git_commit"] == "0123abc"
    assert version.tags["parity_passed"] == "true"
    assert float(version.tags["parity_max_abs_diff"]) == pytest.approx(1e-6)
    assert version.parity_passed
    # Every gate figure is on the version itself, so the gate never needs the run.
    assert set(version.metrics) == {*(f"val_auroc_{c}" for c in LABELS), "val_macro_auroc"}
    assert "epochs_run" not in version.metrics
    assert store.client.resolve("cxr-findings", "challenger") == "1"
    assert store.client.resolve("cxr-findings", "champion") is None
    assert store.client.resolve("no-such-model", "champion") is None


def test_version_files_live_under_artifact_root_as_one_onnx_file(store: Store) -> None:
    registered = store.register("files-model")

    uri = store.client.download_uri("files-model", registered.version)
    folder = Path(uri.removeprefix("file://"))
    assert folder.is_relative_to(store.artifact_root.resolve())
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".onnx", ".md", ".data")) == [
        "model.onnx",
        "model_card.md",
    ]
    assert model_registry.sha256_file(folder / "model.onnx") == registered.sha256
    model = onnx.load(str(folder / "model.onnx"))
    assert {p.key for p in model.metadata_props} >= {"dxassist.labels", "dxassist.preprocess"}
    # The run keeps the card, the metrics and the plots next to the experiment's artifacts.
    run_files = {p.name for p in store.artifact_root.rglob("*") if p.is_file()}
    assert {"model_card.md", "metrics.json", "params.json", f"roc-{store._seed}.png"} <= run_files


def test_register_refuses_a_file_that_changed_after_export(store: Store, tmp_path: Path) -> None:
    onnx_path = tmp_path / "m.onnx"
    build_tiny_cxr(onnx_path, seed=99)
    with pytest.raises(IntegrityError, match="changed after export"):
        store.client.log_and_register(
            name="tampered-export",
            onnx_path=onnx_path,
            params={},
            metrics={"val_auroc": 0.8},
            artifacts=None,
            model_card="card",
            dataset="tests",
            parity_passed=True,
            parity_max_abs_diff=0.0,
            sha256="0" * 64,
        )
    assert store.client.resolve("tampered-export", "challenger") is None


def test_register_refuses_to_set_champion_directly(store: Store) -> None:
    with pytest.raises(RegistryError, match="promote"):
        store.register("direct-champion", alias="champion")


def test_list_and_show_describe_versions_newest_first(store: Store) -> None:
    store.register("listed-model")
    store.register("listed-model", alias=None)

    summary = store.client.show("listed-model")
    assert [v.version for v in summary.versions] == ["2", "1"]
    assert summary.aliases == {"challenger": "1"}
    assert summary.versions[1].aliases == ("challenger",)
    assert summary.versions[0].created_at is not None
    listed = {m.name: m for m in store.client.list_models()}
    assert "listed-model" in listed
    assert len(listed["listed-model"].versions) == 2
    with pytest.raises(NotFound):
        store.client.show("never-registered")
    with pytest.raises(NotFound):
        store.client.get_version("listed-model", 7)


def test_names_that_could_escape_a_folder_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="not accepted"):
        store.client.show("../etc")
    with pytest.raises(ValueError, match="positive whole number"):
        store.client.get_version("listed-model", "1; drop")
