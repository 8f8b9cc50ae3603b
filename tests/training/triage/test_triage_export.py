"""The tiny-profile triage pipeline end to end: ONNX contract, missing values, a torch-free server."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from inference.runtime import read_metadata
from inference.triage import FEATURES, VitalSigns, encode_batch
from training.models import AdditiveTriage
from training.pipeline import TriageConfig, train_triage
from training.pipeline._profiles import ConfigError
from training.pipeline._triage import load_splits

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    out = tmp_path_factory.mktemp("triage")
    return train_triage(TriageConfig.from_profile("tiny", out_dir=out, progress=False))


@pytest.fixture(scope="module")
def session(outcome):
    return ort.InferenceSession(str(outcome.onnx_path), providers=["CPUExecutionProvider"])


def _metadata(path: Path) -> dict[str, str]:
    return read_metadata(path)


def test_outcome_and_artifacts(outcome) -> None:
    assert outcome.model_name == "vitals-triage" and outcome.dataset == "synthetic"
    assert outcome.parity_passed and outcome.parity_max_abs_diff <= 1e-4
    assert len(outcome.sha256) == 64
    for path in outcome.artifacts:
        assert path.is_file() and path.stat().st_size > 0
    assert {p.suffix for p in outcome.artifacts} >= {".png", ".json", ".md"}
    for key in ("test_auroc", "test_news2_auroc", "test_auroc_news2_subset", "test_ece", "val_auroc"):
        assert 0.0 <= outcome.metrics[key] <= 1.0
    assert (
        outcome.metrics["test_auroc_ci_low"]
        <= outcome.metrics["test_auroc"]
        <= outcome.metrics["test_auroc_ci_high"]
    )
    assert 0 < outcome.metrics["test_news2_n"] < outcome.metrics["test_n"]
    assert outcome.metrics["test_auroc"] > 0.7
    assert "SYNTHETIC" in outcome.model_card and "not** a diagnostic device" in outcome.model_card
    assert outcome.params["profile"] == "tiny"
    json.dumps(outcome.params)


def test_metadata_follows_the_artifact_contract(outcome) -> None:
    meta = _metadata(outcome.onnx_path)
    assert meta["dxassist.kind"] == "triage" and meta["dxassist.model_name"] == "vitals-triage"
    assert json.loads(meta["dxassist.features"]) == list(FEATURES)
    assert meta["dxassist.synthetic"] == "true" and "SYNTHETIC" in meta["dxassist.training_data"]
    assert 0.0 < json.loads(meta["dxassist.threshold"]) < 1.0
    assert json.loads(meta["dxassist.temperature"]) > 0
    assert json.loads(meta["dxassist.config"])["profile"] == "tiny"
    float(json.loads(meta["dxassist.intercept"]))
    reference = json.loads(meta["dxassist.reference"])
    assert set(reference) == set(FEATURES) and reference["on_oxygen"] == reference["consciousness"] == 0.0


def test_shapes_are_plausible_and_checked_on_the_export(outcome) -> None:
    assert outcome.metrics["shape_monotonicity_violation"] <= 1e-5
    assert outcome.metrics["missing_contribution_max"] == 0.0
    # Risk and NEWS2 are reported with signs missing at random too, on the same rows.
    for key in ("test_masked_auroc", "test_masked_news2_auroc", "test_masked_ece"):
        assert 0.0 <= outcome.metrics[key] <= 1.0
    assert "NEWS2 known part" in outcome.model_card and "Plausible per-sign effects" in outcome.model_card


def test_contributions_sum_with_the_intercept_to_the_logit(outcome, session) -> None:
    intercept = json.loads(_metadata(outcome.onnx_path)["dxassist.intercept"])
    _, _, test = load_splits(TriageConfig.from_profile("tiny"))
    values, present = test.arrays()
    logit, contributions = session.run(["logit", "contributions"], {"values": values, "present": present})
    assert logit.shape == (len(test),) and contributions.shape == (len(test), len(FEATURES))
    np.testing.assert_allclose(intercept + contributions.sum(axis=1), logit, atol=1e-5)


def test_missing_values_are_handled(session) -> None:
    rows = [
        VitalSigns(),
        VitalSigns(heart_rate=80),
        VitalSigns(
            respiratory_rate=30, spo2=85, on_oxygen=True, systolic_bp=80, heart_rate=140, consciousness="V"
        ),
    ]
    values, present = encode_batch(rows)
    logit, contributions = session.run(None, {"values": values, "present": present})
    assert np.isfinite(logit).all() and np.isfinite(contributions).all()
    # a missing feature contributes exactly 0 whatever garbage sits in `values`
    assert np.all(contributions[present == 0] == 0.0)
    garbage = values.copy()
    garbage[present == 0] = 1e4
    logit2, contributions2 = session.run(None, {"values": garbage, "present": present})
    np.testing.assert_array_equal(contributions2, contributions)
    assert logit[2] > logit[1]  # a shocked, hypoxic, drowsy patient scores above a normal pulse alone


def test_exported_model_runs_without_torch(outcome) -> None:
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch is importable")
import inference.triage as triage
import onnxruntime as ort
import numpy as np
session = ort.InferenceSession({str(outcome.onnx_path)!r}, providers=["CPUExecutionProvider"])
rows = [triage.VitalSigns(heart_rate=120, temperature=39.2), triage.VitalSigns()]
values, present = triage.encode_batch(rows)
logit, contributions = session.run(None, {{"values": values, "present": present}})
assert logit.shape == (2,) and contributions.shape == (2, 8)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_validation_set_does_not_depend_on_the_seed() -> None:
    train_a, val_a, test_a = load_splits(TriageConfig.from_profile("tiny", seed=0))
    train_b, val_b, test_b = load_splits(TriageConfig.from_profile("tiny", seed=1))
    np.testing.assert_array_equal(val_a.arrays()[0], val_b.arrays()[0])
    np.testing.assert_array_equal(test_a.label, test_b.label)
    assert not np.array_equal(train_a.arrays()[0], train_b.arrays()[0])
    assert not np.array_equal(train_a.arrays()[0][: len(val_a)], val_a.arrays()[0])


def _random_model(seed: int) -> AdditiveTriage:
    torch.manual_seed(seed)
    model = AdditiveTriage(std={"heart_rate": 15.0, "respiratory_rate": 4.0}, hidden=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 2.0)
    return model


def test_an_unmeasured_sign_contributes_exactly_zero_whatever_its_value() -> None:
    model = _random_model(0)
    rng = np.random.default_rng(0)
    values = torch.tensor(rng.uniform(-50, 300, (256, 8)), dtype=torch.float32)
    present = torch.tensor(rng.random((256, 8)) > 0.5, dtype=torch.float32)
    logit, contributions = model(values, present)
    assert torch.all(contributions[present == 0] == 0)
    torch.testing.assert_close(logit, model.intercept + contributions.sum(1), atol=1e-5, rtol=0)
    nothing, _ = model(values, torch.zeros_like(present))
    torch.testing.assert_close(nothing, model.intercept.expand(256), atol=0, rtol=0)


def test_every_random_model_is_monotone_away_from_its_normal_point() -> None:
    # Plausibility is built in, not trained in: any weights give a non-decreasing risk away from normal.
    for seed in range(5):
        model = _random_model(seed)
        reference = model.reference_values()
        for j, name in enumerate(FEATURES):
            if name in ("on_oxygen", "consciousness"):
                grid = torch.arange(2 if name == "on_oxygen" else 5, dtype=torch.float32)
            else:
                grid = torch.linspace(reference[name] - 60, reference[name] + 60, 241)
            values = torch.tensor([list(reference.values())] * len(grid), dtype=torch.float32)
            values[:, j] = grid
            shape = model.shape_functions(values)[:, j].detach()
            above = shape[grid >= reference[name]]
            below = shape[grid <= reference[name]].flip(0)
            assert torch.all(above.diff() >= -1e-6), (seed, name)
            assert torch.all(below.diff() >= -1e-6), (seed, name)
            at_reference = torch.tensor([list(reference.values())], dtype=torch.float32)
            assert abs(float(model.shape_functions(at_reference)[0, j].detach())) < 1e-6


def test_config_rejects_unknown_fields_and_profiles() -> None:
    with pytest.raises(ConfigError, match="Unknown triage profile"):
        TriageConfig.from_profile("huge")
    with pytest.raises(ConfigError, match="n_trian"):
        TriageConfig.from_profile("quick", n_trian=10)
    with pytest.raises(ConfigError, match="needs a data path"):
        TriageConfig.from_profile("quick", dataset="mimic-iv-ed")
