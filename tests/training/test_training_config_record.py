"""The training config a model carries (ONNX ``dxassist.config``, model card, MLflow params) names no
folder of the training machine: the data set's folder by its name only, the run's work folder not at all.

Older models, exported when the config kept both as absolute paths, still load: nothing the server reads
depends on them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tiny_models import build_imaging_onnx, sha256_file

from inference.runtime import MetadataKey, read_metadata, serving_problem, write_metadata
from model_registry import LocalModel
from training.pipeline import ImagingConfig, TriageConfig, _imaging, _triage

MACHINE = "/home/ml-eng"
DATA = Path(f"{MACHINE}/exports/hopital-nord-2025")
RUNS = Path(f"{MACHINE}/dxassist/var/runs")


def test_the_imaging_metadata_names_the_data_set_folder_without_the_machines_folders() -> None:
    cfg = ImagingConfig.from_profile(
        "quick", dataset="dxassist-export", data=DATA, out_dir=RUNS / "cxr-findings", seed=7
    )
    metadata = _imaging.imaging_metadata(
        cfg,
        labels=("nodule",),
        thresholds={"nodule": 0.4},
        temperature=1.0,
        preprocess={"input_size": 160, "mean": 0.5, "std": 0.25, "window_percentiles": [1.0, 99.0]},
        training_data=_imaging.training_data_line(cfg, 12),
        ood={"method": "mahalanobis", "threshold": 3.0, "pass_rate": 0.995},
    )

    assert not [key for key, value in metadata.items() if MACHINE in value]
    config = json.loads(metadata[MetadataKey.CONFIG])
    assert config["data"] == "hopital-nord-2025"
    assert "out_dir" not in config
    # What reproduction needs stays: the data set, its seed, every training setting.
    assert config["dataset"] == "dxassist-export" and config["seed"] == 7 and config["input_size"] == 160


def test_the_imaging_model_card_names_the_data_set_folder_without_the_machines_folders() -> None:
    """The card travels with the model (registry artifact, other sites): its data section names the data
    set and its folder's name, never where the folder was on the training machine."""
    cfg = ImagingConfig.from_profile(
        "quick", dataset="dxassist-export", data=DATA, out_dir=RUNS / "cxr-findings", seed=7
    )
    figures: defaultdict[str, float] = defaultdict(lambda: 0.5)
    card = _imaging._model_card(
        cfg,
        labels=("nodule",),
        metrics=figures,
        thresholds={"nodule": 0.4},
        training_data=_imaging.training_data_line(cfg, 12),
        split_sizes=(8, 2, 2),
        sha256="0" * 64,
        best_epoch=1,
    )

    assert MACHINE not in card
    assert "`dxassist-export` read from `hopital-nord-2025`" in card


def test_the_triage_metadata_and_card_name_no_folder_of_the_machine() -> None:
    cfg = TriageConfig(dataset="mimic-iv-ed", data=DATA, out_dir=RUNS / "vitals-triage")
    metadata = _triage.triage_metadata(
        cfg,
        intercept=-2.0,
        threshold=0.3,
        temperature=1.0,
        training_data="MIMIC-IV-ED triage vital signs (50 ED stays), training split (n=50)",
        reference={"heart_rate": 80.0},
    )

    assert not [key for key, value in metadata.items() if MACHINE in value]
    config = json.loads(metadata[MetadataKey.CONFIG])
    assert config["data"] == "hopital-nord-2025" and "out_dir" not in config
    assert config["dataset"] == "mimic-iv-ed" and config["seed"] == cfg.seed


def test_a_relative_data_folder_is_kept_by_its_name_too() -> None:
    cfg = ImagingConfig.from_profile("quick", dataset="dxassist-export", data=Path("exports/2026-12"))
    assert cfg.to_record()["data"] == "2026-12"
    assert ImagingConfig.from_profile("quick").to_record()["data"] is None  # synthetic: nothing read


def test_an_older_model_whose_config_keeps_absolute_folders_still_loads(tmp_path: Path) -> None:
    import onnx

    path = build_imaging_onnx(tmp_path / "old.onnx")
    model = onnx.load(str(path))
    metadata = read_metadata(model)
    metadata[MetadataKey.CONFIG] = json.dumps(
        {"dataset": "dxassist-export", "data": str(DATA), "out_dir": str(RUNS / "cxr-findings"), "seed": 0}
    )
    write_metadata(model, metadata)
    onnx.save_model(model, str(path))
    local = LocalModel(
        name="cxr-findings", version="3", sha256=sha256_file(path), path=path, aliases=(), run_id=None
    )

    assert serving_problem(local, "imaging") is None
