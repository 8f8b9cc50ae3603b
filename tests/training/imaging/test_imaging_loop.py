"""fit_imaging learns a separable toy task, restores its best epoch, and localises what it learned."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from training.loops import fit_imaging, localisation_loss, localisation_targets, macro_auroc, predict
from training.models import CxrNet
from training.pipeline._imaging import _pointing_game

SIZE = 48
N_CLASSES = 5
PATCH = 12


def _pattern(k: int) -> np.ndarray:
    """A distinct 12x12 texture per class, so classes differ by appearance as findings do."""
    r, c = np.mgrid[0:PATCH, 0:PATCH]
    frame = ((r < 3) | (r > 8) | (c < 3) | (c > 8)).astype(float)
    patterns = [
        np.ones((PATCH, PATCH)),  # bright square
        -np.ones((PATCH, PATCH)),  # dark square
        ((r >= 4) & (r < 8)).astype(float),  # horizontal bar
        ((c >= 4) & (c < 8)).astype(float),  # vertical bar
        frame,  # hollow square
    ]
    return 1.5 * patterns[k]


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images where each present class stamps its texture at a random place (its mask)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, size=(n, 1, SIZE, SIZE)).astype(np.float32)
    y = (rng.random((n, N_CLASSES)) < 0.35).astype(np.float32)
    masks = np.zeros((n, N_CLASSES, SIZE, SIZE), dtype=bool)
    for i in range(n):
        # One cell of a 3x3 grid per class keeps the stamps of one image from overlapping.
        cells = rng.permutation(9)[:N_CLASSES]
        for k in np.flatnonzero(y[i]):
            cell = int(cells[k])
            r0, c0 = (cell // 3) * 16 + rng.integers(0, 5), (cell % 3) * 16 + rng.integers(0, 5)
            x[i, 0, r0 : r0 + PATCH, c0 : c0 + PATCH] += _pattern(int(k))
            masks[i, k, r0 : r0 + PATCH, c0 : c0 + PATCH] = True
    return x, y, masks


@pytest.fixture(scope="module")
def trained() -> tuple[CxrNet, object]:
    torch.manual_seed(0)
    net = CxrNet(N_CLASSES, widths=(8, 16, 32), depths=(1, 1, 1), strides=(1, 2, 2))
    x, y, _ = _toy(256, 0)
    xv, yv, _ = _toy(96, 1)
    fit = fit_imaging(
        net, x, y, xv, yv, epochs=15, batch_size=32, lr=3e-2, seed=0, max_shift=2, threads=1, progress=False
    )
    return net, fit


def test_learns_a_separable_task(trained) -> None:  # type: ignore[no-untyped-def]
    net, _ = trained
    xt, yt, _ = _toy(96, 2)
    logits, _ = predict(net, xt)
    macro, per = macro_auroc(yt, logits)
    assert macro > 0.95, per


def test_keeps_the_best_epoch_and_logs_each(trained) -> None:  # type: ignore[no-untyped-def]
    net, fit = trained
    assert len(fit.history) == 15
    best = max(fit.history, key=lambda s: (s.val_macro_auroc, s.epoch))
    assert fit.best_epoch == best.epoch
    xv, yv, _ = _toy(96, 1)
    logits, _ = predict(net, xv)
    # The weights in the model are those of the best epoch: its validation AUROC is reproduced.
    assert macro_auroc(yv, logits)[0] == pytest.approx(fit.best_val_macro_auroc, abs=1e-6)


def test_cam_points_at_the_region_of_the_finding(trained) -> None:  # type: ignore[no-untyped-def]
    net, _ = trained
    xt, yt, masks = _toy(96, 3)
    _, cams = predict(net, xt, with_cam=True)
    assert cams is not None and cams.shape == (96, N_CLASSES, SIZE // 8, SIZE // 8)
    pooled, per, n = _pointing_game(cams, yt, masks, chunk=40)
    assert n == int(yt.sum())
    assert pooled > 0.7, per  # chance is about 0.06 (a 12x12 patch in 48x48)


def test_epoch_metrics_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    x, y, _ = _toy(32, 0)
    net = CxrNet(N_CLASSES, widths=(4, 8), depths=(1, 1), strides=(2, 2))
    with caplog.at_level(logging.INFO, logger="training.loops"):
        fit_imaging(net, x, y, x, y, epochs=2, batch_size=16, lr=1e-3, threads=1, progress=False)
    lines = [r.getMessage() for r in caplog.records if "val macro AUROC" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith("imaging epoch 1/2")


def test_empty_split_is_refused() -> None:
    x, y, _ = _toy(8, 0)
    net = CxrNet(N_CLASSES, widths=(4,), depths=(1,), strides=(2,))
    with pytest.raises(ValueError, match="empty split"):
        fit_imaging(net, x, y, x[:0], y[:0], epochs=1, batch_size=4, lr=1e-3, threads=1, progress=False)


def test_localisation_targets_are_mask_shares_per_cam_cell() -> None:
    masks = np.zeros((1, 2, 16, 16), dtype=bool)
    masks[0, 0, 0:4, 0:2] = True  # half of the top-left 4x4 cell
    masks[0, 1, 8:16, 12:16] = True  # two whole cells
    targets = localisation_targets(masks, 4)
    assert targets.shape == (1, 2, 4, 4)
    assert targets[0, 0, 0, 0] == pytest.approx(0.5) and targets[0, 0].sum() == pytest.approx(0.5)
    assert targets[0, 1, 2, 3] == 1.0 and targets[0, 1, 3, 3] == 1.0 and targets[0, 1].sum() == 2.0


def test_localisation_loss_rewards_a_peak_inside_the_mask() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = 1.0
    inside = torch.zeros(1, 1, 4, 4)
    inside[0, 0, 1, 2] = 5.0
    outside = torch.zeros(1, 1, 4, 4)
    outside[0, 0, 3, 0] = 5.0
    positive = torch.ones(1, 1)
    assert localisation_loss(inside, target, positive) < localisation_loss(outside, target, positive)
    # Absent findings carry no localisation signal.
    assert float(localisation_loss(outside, target, torch.zeros(1, 1))) == 0.0


def test_localisation_supervision_sharpens_the_cam() -> None:
    x, y, masks = _toy(256, 0)
    xv, yv, _ = _toy(96, 1)
    xt, yt, mt = _toy(96, 3)
    results = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        net = CxrNet(N_CLASSES, widths=(8, 16, 32), depths=(1, 1, 1), strides=(1, 2, 2))
        fit_imaging(
            net, x, y, xv, yv, epochs=6, batch_size=32, lr=3e-2, max_shift=2, threads=1, progress=False,
            loc_train=localisation_targets(masks, net.stride), loc_weight=weight,
        )  # fmt: skip
        _, cams = predict(net, xt, with_cam=True)
        assert cams is not None
        results.append(_pointing_game(cams, yt, mt)[0])
    assert results[1] > results[0] + 0.1, results
