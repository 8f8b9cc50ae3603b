"""train_imaging end to end on a tiny synthetic set: metrics, artifacts, ONNX, model card, data reuse."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnxruntime as ort
import pytest

from inference.runtime import read_metadata
from training.data import FINDINGS
from training.pipeline import ImagingConfig, TrainingOutcome, train_imaging

TinyRun = tuple[ImagingConfig, TrainingOutcome]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    cfg = ImagingConfig.from_profile(
        "quick",
        out_dir=tmp_path_factory.mktemp("imaging-run"),
        n_images=160,
        input_size=64,
        widths=(8, 16, 16, 32),
        epochs=2,
        n_boot=50,
        ood_eval_per_kind=3,
        ood_contrast_laterals=12,
        workers=1,
        threads=1,
        progress=False,
    )
    return cfg, train_imaging(cfg)


def test_outcome_carries_every_metric_the_gate_and_card_read(tiny_run: TinyRun) -> None:
    _, outcome = tiny_run
    m = outcome.metrics
    expected = {"test_macro_auroc", "test_ece", "test_pointing_game", "val_macro_auroc"}
    for name in FINDINGS:
        expected |= {
            f"test_auroc_{name}",
            f"test_auroc_{name}_ci_low",
            f"test_auroc_{name}_ci_high",
            f"test_sensitivity_{name}",
            f"test_specificity_{name}",
            f"val_auroc_{name}",
        }
    assert expected <= set(m)
    assert 0.0 <= m["test_macro_auroc"] <= 1.0
    assert 0.0 <= m["test_ece"] <= 1.0
    assert 0.0 <= m["test_pointing_game"] <= m["test_pointing_game_tolerant"] <= 1.0
    assert m["test_pointing_game_n"] > 0 and m["localisation_supervised"] == 1.0
    for name in FINDINGS:
        if not np.isnan(m[f"test_auroc_{name}"]):
            assert (
                m[f"test_auroc_{name}_ci_low"] <= m[f"test_auroc_{name}"] <= m[f"test_auroc_{name}_ci_high"]
            )


def test_artifacts_and_onnx_are_written(tiny_run: TinyRun) -> None:
    cfg, outcome = tiny_run
    assert outcome.model_name == "cxr-findings" and outcome.dataset == "synthetic"
    assert outcome.parity_passed and outcome.parity_max_abs_diff <= 1e-4
    assert outcome.onnx_path == cfg.out_dir / "cxr-findings.onnx"
    names = {p.name for p in outcome.artifacts}
    assert {"roc.png", "calibration.png", "metrics.json", "model_card.md"} <= names
    for path in outcome.artifacts:
        assert path.is_file() and path.stat().st_size > 0
    for png in ("roc.png", "calibration.png"):
        assert (cfg.out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = json.loads((cfg.out_dir / "metrics.json").read_text())
    assert stored["metrics"]["test_macro_auroc"] == pytest.approx(outcome.metrics["test_macro_auroc"])
    assert len(stored["history"]) == cfg.epochs

    session = ort.InferenceSession(str(outcome.onnx_path), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": np.zeros((3, 1, 64, 64), np.float32)})
    cells = 64 // cfg.cam_stride
    assert logits.shape == (3, len(FINDINGS)) and cam.shape == (3, len(FINDINGS), cells, cells)
    props = read_metadata(outcome.onnx_path)
    assert json.loads(props["dxassist.thresholds"]) == pytest.approx(
        {name: outcome.metrics[f"threshold_{name}"] for name in FINDINGS}
    )
    assert json.loads(props["dxassist.temperature"]) == pytest.approx(outcome.metrics["temperature"])
    assert json.loads(props["dxassist.config"])["n_images"] == 160
    ood_meta = json.loads(props["dxassist.ood"])
    assert ood_meta["threshold"] == pytest.approx(outcome.metrics["ood_threshold"])
    assert ood_meta["method"] == "mahalanobis-pooled-multidepth" and ood_meta["pass_rate"] == 0.995
    # The known neighbour the guard tells frontal films from, and how many laterals it was fitted on.
    assert ood_meta["contrast"]["fitted_on"] == 12 and ood_meta["contrast"]["weight"] == 10.0


def test_ood_guard_figures_are_measured_and_in_the_card(tiny_run: TinyRun) -> None:
    from training.data import OOD_KINDS

    cfg, outcome = tiny_run
    m = outcome.metrics
    assert m["ood_eval_n"] == 3 * len(OOD_KINDS)
    assert m["ood_val_pass_rate"] >= 0.995
    for key in ("ood_auroc", "ood_test_pass_rate", "ood_refusal_rate"):
        assert 0.0 <= m[key] <= 1.0
    for kind in OOD_KINDS:
        assert 0.0 <= m[f"ood_refusal_rate_{kind}"] <= 1.0
    assert "## Out-of-distribution guard" in outcome.model_card
    assert "lateral" in OOD_KINDS and "| lateral |" in outcome.model_card
    assert "12 lateral phantoms" in outcome.model_card
    assert f"{m['ood_auroc']:.3f}" in outcome.model_card
    session = ort.InferenceSession(str(outcome.onnx_path), providers=["CPUExecutionProvider"])
    noise = np.random.default_rng(0).uniform(-3, 3, size=(2, 1, 64, 64)).astype(np.float32)
    (ood,) = session.run(["ood"], {"image": noise})
    assert (ood > m["ood_threshold"]).all()  # even two epochs on 160 phantoms refuse white noise


def test_model_card_says_the_data_is_synthetic(tiny_run: TinyRun) -> None:
    _, outcome = tiny_run
    card = outcome.model_card
    assert "SYNTHETIC" in card
    assert "say nothing about its performance on real radiographs" in card.replace("\n", " ")
    assert "not** a diagnostic device" in card
    for name in FINDINGS:
        assert f"| {name} |" in card
    assert outcome.sha256 in card


def test_second_run_reuses_the_generated_images(tiny_run: TinyRun, caplog: pytest.LogCaptureFixture) -> None:
    from training.pipeline._imaging import _synthetic_data

    cfg, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in (cfg.out_dir / "data" / "images").iterdir()}
    with caplog.at_level(logging.INFO, logger="training.pipeline"):
        root = _synthetic_data(cfg)
    assert root == cfg.out_dir / "data"
    assert any("Reusing" in r.getMessage() for r in caplog.records)
    assert {p: p.stat().st_mtime_ns for p in (root / "images").iterdir()} == before


def test_validation_split_depends_on_the_seed_only(tiny_run: TinyRun) -> None:
    import csv

    from training.data import split_indices

    cfg, outcome = tiny_run
    with (cfg.out_dir / "data" / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    val_rows = [i for i, row in enumerate(rows) if row["split"] == "val"]
    # The promotion gate compares versions on this split: any run with the same seed sees these images.
    assert val_rows == split_indices(cfg.n_images, cfg.seed).val.tolist()
    assert outcome.metrics["val_n"] == len(val_rows)


def test_test_figures_are_those_of_the_served_path(tiny_run: TinyRun) -> None:
    """Each validation and test file was decoded, prepared and scored as the server does
    (inference.analysis on the exported ONNX file); the training path's probabilities differ from it only
    by rounding-level amounts."""
    _, outcome = tiny_run
    m = outcome.metrics
    assert m["val_scored_by_served_path"] == 1.0 and m["test_scored_by_served_path"] == 1.0
    assert 0.0 <= m["test_served_vs_training_max_abs_diff"] < 0.05
    assert 0.0 <= m["val_served_vs_training_max_abs_diff"] < 0.05
    assert m["seconds_served_eval"] > 0.0


def test_thresholds_and_calibration_are_fitted_on_what_the_server_computes(tiny_run: TinyRun) -> None:
    """The temperature, every finding threshold and the OOD threshold written into the ONNX file are those
    the served validation scores give: re-scoring the validation files through the server's path with the
    shipped file and refitting gives the same numbers; the drift reference holds the served validation
    scores."""
    import csv
    import hashlib

    from inference.analysis import prepare_input
    from inference.config import LimitsSettings, RuntimeSettings
    from inference.dicom import Limits, read_study
    from inference.runtime import load_served_model, score_batch
    from training.evaluate import fit_temperature, sigmoid, threshold_for_sensitivity
    from training.pipeline._served_eval import _Artifact

    cfg, outcome = tiny_run
    path = outcome.onnx_path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == outcome.sha256  # the file as restamped
    served = load_served_model(
        _Artifact("cxr-findings", "check", outcome.sha256, path), RuntimeSettings(), expected_kind="imaging"
    )
    meta = served.imaging_meta
    root = cfg.out_dir / "data"
    with (root / "labels.csv").open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["split"] == "val"]
    limits = Limits.from_settings(LimitsSettings())
    logits, labels, ood = [], [], []
    for row in rows:
        study = read_study([(root / row["file"]).read_bytes()], limits=limits, target_size=meta.input_size)
        if row["view"] in ("LL", "LAT", "RL"):  # the pipeline trains and evaluates frontal views only
            continue
        [output] = score_batch(served, prepare_input(study.primary, served).tensor[None])
        logits.append(output.logits)
        ood.append(output.ood_score)
        labels.append([float(row[code]) for code in FINDINGS])
    y = np.asarray(labels, dtype=np.float32)
    z = np.asarray(logits, dtype=np.float32)
    assert len(y) == outcome.metrics["val_n"]
    assert fit_temperature(z, y) == pytest.approx(meta.temperature, abs=1e-3)
    p_val = sigmoid(z / meta.temperature)
    for k, code in enumerate(FINDINGS):
        refit = threshold_for_sensitivity(y[:, k], p_val[:, k], cfg.sensitivity_target, free_sensitivity=True)
        assert refit == pytest.approx(meta.thresholds[code], abs=1e-4)
    assert json.loads(read_metadata(path)["dxassist.drift_reference"])["n"] == len(y)
    # The OOD threshold too: the pass-rate quantile of the served validation scores.
    assert meta.ood.threshold == pytest.approx(
        float(np.quantile(ood, cfg.ood_pass_rate, method="higher")), rel=1e-5
    )
    assert outcome.metrics["ood_refusal_set_scored_by_served_path"] == 1.0


def test_nothing_kept_with_the_model_names_the_runs_work_folder(tiny_run: TinyRun) -> None:
    """The model card, the MLflow params, the ONNX metadata and the checkpoint travel with the model
    (registry, servers, other sites); the folder the run wrote into on the training machine is none of
    their business, and reproduction does not need it."""
    import torch

    cfg, outcome = tiny_run
    folder = str(cfg.out_dir)
    assert folder not in outcome.model_card
    assert folder not in json.dumps(outcome.params) and "out_dir" not in outcome.params
    assert not [key for key, value in read_metadata(outcome.onnx_path).items() if folder in value]
    checkpoint = torch.load(cfg.out_dir / "cxr-findings.pt", weights_only=True)
    assert folder not in json.dumps(checkpoint["config"])
    assert outcome.params["seed"] == cfg.seed and outcome.params["dataset"] == "synthetic"
