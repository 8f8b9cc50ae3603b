"""Fixtures for the imaging model tests: a small CxrNet with non-trivial BatchNorm statistics, exported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

INPUT_SIZE = 64


@pytest.fixture(autouse=True)
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """Run these small nets on one thread, restoring the process setting afterwards.

    On a shared machine two OpenMP threads that spin-wait for each other are much slower than one
    (the CI box runs several test processes at once).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small_net():  # type: ignore[no-untyped-def]
    import torch

    from training.models import CxrNet

    torch.manual_seed(0)
    net = CxrNet(5, widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), strides=(2, 2, 2, 1))
    # Fresh BatchNorm layers are the identity in eval mode (zero mean, unit variance, gamma 0 on the
    # last BN of each block); random statistics exercise the exported graph as a trained net would.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
        net.classifier.bias.copy_(torch.randn(5, generator=gen))
    return net.eval()


@pytest.fixture()
def small_net():  # type: ignore[no-untyped-def]
    return _small_net()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(3, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)


@pytest.fixture(scope="session")
def ood_stats():  # type: ignore[no-untyped-def]
    """OOD statistics of the small net, fitted on 48 smooth random images (the "training set")."""
    from training.models import collect_pooled_features, fit_ood_statistics

    rng = np.random.default_rng(5)
    base = rng.normal(size=(48, 1, INPUT_SIZE // 8, INPUT_SIZE // 8)).astype(np.float32)
    train = np.repeat(np.repeat(base, 8, axis=2), 8, axis=3)
    return fit_ood_statistics(collect_pooled_features(_small_net(), train))


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray, ood_stats):  # type: ignore[no-untyped-def]
    """A small CxrNet with its OOD guard, exported through ``training.export.export_onnx`` with the
    pipeline's metadata; returns the bare net (for references) and the export report."""
    from inference.preprocess import PreprocessParams
    from training.data import FINDINGS
    from training.export import export_onnx
    from training.models import GuardedCxrNet
    from training.pipeline import ImagingConfig
    from training.pipeline._imaging import imaging_metadata, training_data_line

    cfg = ImagingConfig.from_profile("quick", input_size=INPUT_SIZE, out_dir=tmp_path_factory.mktemp("cfg"))
    net = _small_net()
    metadata = imaging_metadata(
        cfg,
        labels=tuple(FINDINGS),
        thresholds=dict.fromkeys(FINDINGS, 0.3),
        temperature=1.3,
        preprocess=PreprocessParams(input_size=INPUT_SIZE).to_metadata(),
        training_data=training_data_line(cfg, 10),
        ood={"method": "mahalanobis-pooled-multidepth", "threshold": 2.0, "pass_rate": 0.995},
    )
    path: Path = tmp_path_factory.mktemp("onnx") / "cxr-findings.onnx"
    report = export_onnx(
        GuardedCxrNet(net, ood_stats),
        {"image": images[:2]},
        ["logits", "cam", "ood"],
        path,
        metadata=metadata,
        parity_outputs=["logits", "ood"],
    )
    return net, report
