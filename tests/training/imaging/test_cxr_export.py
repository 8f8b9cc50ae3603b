"""The exported cxr-findings ONNX: parity, dynamic batch, in-graph CAM, metadata, no torch at serve time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import torch

from inference.runtime import read_metadata
from training.data import FINDINGS

INPUT_SIZE = 64


def _session(path) -> ort.InferenceSession:  # type: ignore[no-untyped-def]
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_parity_within_tolerance(exported) -> None:  # type: ignore[no-untyped-def]
    _, report = exported
    assert report.parity_passed
    assert report.parity_max_abs_diff <= 1e-4


def test_dynamic_batch_and_cam_identity_in_onnx_runtime(exported, images: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    net, report = exported
    session = _session(report.path)
    bias = net.classifier.bias.detach().numpy()
    for n in (1, 3):
        logits, cam = session.run(["logits", "cam"], {"image": images[:n]})
        assert logits.shape == (n, len(FINDINGS))
        assert cam.shape == (n, len(FINDINGS), INPUT_SIZE // 16, INPUT_SIZE // 16)
        np.testing.assert_allclose(logits, cam.mean(axis=(2, 3)) + bias, rtol=0, atol=1e-5)
        with torch.no_grad():
            ref_logits, ref_cam = net(torch.from_numpy(images[:n]))
        np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(cam, ref_cam.numpy(), rtol=0, atol=1e-4)


def test_input_and_outputs_are_named_as_the_contract_says(exported) -> None:  # type: ignore[no-untyped-def]
    _, report = exported
    session = _session(report.path)
    (inp,) = session.get_inputs()
    assert inp.name == "image"
    assert inp.shape[1:] == [1, INPUT_SIZE, INPUT_SIZE]
    assert isinstance(inp.shape[0], str)  # symbolic: any batch size
    assert [o.name for o in session.get_outputs()] == ["logits", "cam", "ood"]


def test_ood_output_matches_a_numpy_mahalanobis_on_the_same_features(exported, ood_stats) -> None:  # type: ignore[no-untyped-def]
    """The in-graph OOD score equals the NumPy reference on the pooled features, near and far from the
    training images, and ranks images unlike them (noise, a constant, a photograph-like ramp) higher."""
    from training.models import collect_pooled_features, mahalanobis_score

    net, report = exported
    rng = np.random.default_rng(11)
    near = np.repeat(np.repeat(rng.normal(size=(4, 1, 8, 8)), 8, axis=2), 8, axis=3)
    noise = rng.uniform(-4, 4, size=(2, 1, INPUT_SIZE, INPUT_SIZE))
    ramp = np.broadcast_to(np.linspace(-3, 3, INPUT_SIZE), (1, 1, INPUT_SIZE, INPUT_SIZE))
    batch = np.concatenate([near, noise, ramp, np.full((1, 1, INPUT_SIZE, INPUT_SIZE), 5.0)]).astype(
        np.float32
    )
    (ood,) = _session(report.path).run(["ood"], {"image": batch})
    reference = mahalanobis_score(collect_pooled_features(net, batch), ood_stats)
    assert ood.shape == (len(batch),)
    np.testing.assert_allclose(ood, reference, rtol=1e-3, atol=1e-4)
    assert reference[4:].min() > reference[:4].max()


def test_metadata_is_complete_and_parseable(exported) -> None:  # type: ignore[no-untyped-def]
    _, report = exported
    props = read_metadata(report.path)
    assert props["dxassist.kind"] == "imaging"
    assert props["dxassist.model_name"] == "cxr-findings"
    assert json.loads(props["dxassist.labels"]) == list(FINDINGS)
    thresholds = json.loads(props["dxassist.thresholds"])
    assert set(thresholds) == set(FINDINGS)
    assert all(0.0 <= v <= 1.0 for v in thresholds.values())
    assert json.loads(props["dxassist.temperature"]) > 0
    preprocess = json.loads(props["dxassist.preprocess"])
    assert preprocess["input_size"] == INPUT_SIZE
    assert {"mean", "std", "window_percentiles"} <= set(preprocess)
    assert props["dxassist.synthetic"] == "true"
    assert "SYNTHETIC" in props["dxassist.training_data"] and "\n" not in props["dxassist.training_data"]
    config = json.loads(props["dxassist.config"])
    assert config["input_size"] == INPUT_SIZE and config["dataset"] == "synthetic"


def test_exported_model_runs_where_torch_cannot_be_imported(exported) -> None:  # type: ignore[no-untyped-def]
    _, report = exported
    script = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
        "import inference\n"  # telemetry off before onnxruntime, as in the server
        "import json, numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "meta = s.get_modelmeta().custom_metadata_map\n"
        "size = json.loads(meta['dxassist.preprocess'])['input_size']\n"
        "x = np.zeros((2, 1, size, size), np.float32)\n"
        "logits, cam = s.run(['logits', 'cam'], {'image': x})\n"
        "try:\n"
        "    import torch\n"
        "except ImportError:\n"
        "    print('no-torch', logits.shape, cam.shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(report.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"no-torch (2, 5) (2, 5, {INPUT_SIZE // 16}, {INPUT_SIZE // 16})"


def test_lse_pooled_net_exports_with_its_pooling_and_guard(tmp_path, images: np.ndarray, ood_stats) -> None:  # type: ignore[no-untyped-def]
    """The default pooling of the trained model (log-sum-exp over the CAM) is part of the graph: ONNX
    Runtime's logits equal the smooth maximum of its own CAM plus the bias, and torch's logits."""
    from training.export import export_onnx
    from training.models import CxrNet, GuardedCxrNet

    torch.manual_seed(0)
    net = CxrNet(5, widths=(8, 16, 16, 32), strides=(2, 2, 2, 1), pooling="lse", lse_r=1.5).eval()
    report = export_onnx(
        GuardedCxrNet(net, ood_stats),
        {"image": images[:2]},
        ["logits", "cam", "ood"],
        tmp_path / "lse.onnx",
        metadata={"dxassist.kind": "imaging"},
        parity_outputs=["logits", "ood"],
    )
    assert report.parity_passed
    logits, cam = _session(report.path).run(["logits", "cam"], {"image": images})
    flat = cam.reshape(len(images), len(FINDINGS), -1).astype(np.float64)
    peak = flat.max(axis=2, keepdims=True)
    lse = (peak[..., 0] + np.log(np.exp(1.5 * (flat - peak)).sum(axis=2)) / 1.5) - np.log(flat.shape[2]) / 1.5
    np.testing.assert_allclose(logits, lse + net.classifier.bias.detach().numpy(), rtol=0, atol=1e-4)
