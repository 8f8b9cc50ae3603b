"""A copied or moved store keeps its artifacts to itself; training curves are logged with their epochs."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

from _registry_testkit import LABELS, Store, build_tiny_cxr

import model_registry


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: size, modification time and sha256 (what "untouched" means)."""
    out: dict[str, tuple[int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, digest)
    return out


def _stored_locations(db: Path) -> list[str]:
    """Every artifact URI the MLflow store holds, from its own tables."""
    queries = (
        "SELECT artifact_location FROM experiments WHERE name LIKE 'dxassist/%'",
        "SELECT artifact_uri FROM runs",
        "SELECT artifact_location FROM logged_models",
        "SELECT source FROM model_versions",
        "SELECT storage_location FROM model_versions",
    )
    with sqlite3.connect(db) as connection:
        return [str(row[0]) for query in queries for row in connection.execute(query) if row[0]]


def _register(
    client: model_registry.RegistryClient, folder: Path, seed: int
) -> model_registry.RegisteredVersion:
    onnx_path = folder / f"tiny-{seed}.onnx"
    sha = build_tiny_cxr(onnx_path, seed=seed)
    return client.log_and_register(
        name="cxr-moved",
        onnx_path=onnx_path,
        params={"seed": seed},
        metrics={f"val_auroc_{c}": 0.9 for c in LABELS},
        artifacts=None,
        model_card="# Tiny\n\nSynthetic; not for clinical use.\n",
        dataset="tiny-synthetic (tests)",
        parity_passed=True,
        parity_max_abs_diff=0.0,
        sha256=sha,
    )


def test_a_copied_store_registers_into_itself_and_reads_its_own_copies(
    tmp_path: Path, migrated_store: Path
) -> None:
    original = tmp_path / "A"
    first = Store(original, migrated_store)
    _register(first.client, tmp_path / "exports", seed=1)
    copy = tmp_path / "B"
    shutil.copytree(original, copy)
    # Move the original away: a store still pointing at A's path would recreate it, or fail to read.
    moved = tmp_path / "A-moved"
    original.rename(moved)
    before = _tree(moved)

    client = model_registry.RegistryClient(f"sqlite:///{copy / 'mlflow.db'}", copy / "mlartifacts")
    second = _register(client, tmp_path / "exports", seed=2)

    assert second.version == "2"
    assert not original.exists(), "the copy wrote into the folder it was copied from"
    assert _tree(moved) == before
    locations = _stored_locations(copy / "mlflow.db")
    assert locations and all(loc.startswith((copy / "mlartifacts").as_uri() + "/") for loc in locations)
    # Both versions are read from the copy's own files, the one registered before the copy included.
    for version in ("1", "2"):
        local = client.download_onnx("cxr-moved", version, tmp_path / f"download-{version}")
        assert model_registry.sha256_file(local) == client.get_version("cxr-moved", version).sha256
    cache = model_registry.ModelCache(copy / "models")
    assert cache.fetch("cxr-moved", "challenger", client=client).version == "2"


def test_a_store_in_place_is_not_rewritten(store: Store) -> None:
    store.register("cxr-in-place")
    db = Path(store.tracking_uri.removeprefix("sqlite:///"))
    locations = _stored_locations(db)
    mtime = db.stat().st_mtime_ns
    model_registry.RegistryClient(store.tracking_uri, store.artifact_root).list_models()
    assert _stored_locations(db) == locations
    assert db.stat().st_mtime_ns == mtime


def test_training_curves_are_logged_with_their_epochs(store: Store) -> None:
    onnx_path = store.root / "exports" / "curves.onnx"
    sha = build_tiny_cxr(onnx_path, seed=40)
    history = [
        {"epoch": 1.0, "train_loss": 0.9, "val_loss": 0.8, "val_auroc": 0.70},
        {"epoch": 2.0, "train_loss": 0.6, "val_loss": 0.65, "val_auroc": 0.80},
        {"epoch": 3.0, "train_loss": 0.5, "val_loss": float("nan"), "val_auroc": 0.85},
    ]
    version = store.client.log_and_register(
        name="cxr-curves",
        onnx_path=onnx_path,
        params={},
        metrics={"val_auroc": 0.84, "test_auroc": 0.83},
        artifacts=None,
        model_card="# Tiny\n",
        dataset="tiny-synthetic (tests)",
        parity_passed=True,
        parity_max_abs_diff=0.0,
        sha256=sha,
        history=history,
    )
    client = store.client
    assert client.training_curve("cxr-curves", version.version, "train_loss") == [
        (1, 0.9),
        (2, 0.6),
        (3, 0.5),
    ]
    assert client.training_curve("cxr-curves", version.version, "val_auroc") == [
        (1, 0.7),
        (2, 0.8),
        (3, 0.85),
    ]
    # A figure that was not a number in an epoch leaves a gap rather than a NaN point.
    assert client.training_curve("cxr-curves", version.version, "val_loss") == [(1, 0.8), (2, 0.65)]
    # The run's final figures are not hidden by the last epoch's value of the same name.
    assert client.run_metrics("cxr-curves", version.version) == {"val_auroc": 0.84, "test_auroc": 0.83}
