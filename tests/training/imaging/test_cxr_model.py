"""CxrNet: shapes, stride and the CAM identity that lets the server explain without gradients."""

from __future__ import annotations

import pytest
import torch

from training.models import CxrNet


@pytest.mark.parametrize("size", [64, 96])
def test_logits_equal_cam_mean_plus_bias(small_net: CxrNet, size: int) -> None:
    x = torch.randn(4, 1, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        logits, cam = small_net(x)
    assert logits.shape == (4, 5)
    assert cam.shape == (4, 5, size // 16, size // 16)
    torch.testing.assert_close(logits, cam.mean((2, 3)) + small_net.classifier.bias, rtol=0, atol=1e-6)


def test_cam_is_the_classifier_applied_to_pooled_features(small_net: CxrNet) -> None:
    # The identity must also match the textbook head (GAP then linear), or the CAM would explain
    # a different model from the one that scores.
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats = small_net.features(small_net.stem(x))
        expected = small_net.classifier(feats.mean((2, 3)))
        logits, _ = small_net(x)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_stride_follows_the_stage_strides() -> None:
    assert CxrNet(5).stride == 16
    net = CxrNet(3, widths=(8, 16), depths=(1, 1), strides=(2, 2))
    assert net.stride == 8
    with torch.no_grad():
        logits, cam = net.eval()(torch.zeros(1, 1, 64, 64))
    assert logits.shape == (1, 3) and cam.shape == (1, 3, 8, 8)


def test_mismatched_stage_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="equal length"):
        CxrNet(5, widths=(8, 16), depths=(1,), strides=(2, 2))


def test_training_step_changes_the_cam() -> None:
    torch.manual_seed(0)
    net = CxrNet(5, widths=(8, 16, 16, 32))
    x = torch.randn(8, 1, 64, 64)
    y = (torch.rand(8, 5) > 0.5).float()
    before = net.eval()(x)[1].detach().clone()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x)[0], y)
    loss.backward()
    opt.step()
    after = net.eval()(x)[1].detach()
    assert not torch.allclose(before, after)


def test_lse_pooling_is_a_smooth_maximum_of_the_cam_plus_bias() -> None:
    torch.manual_seed(0)
    net = CxrNet(5, widths=(8, 16), depths=(1, 1), strides=(2, 2), pooling="lse", lse_r=2.0).eval()
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, cam = net(x)
    flat = cam.flatten(2)
    expected = (torch.logsumexp(2.0 * flat, dim=2) - torch.log(torch.tensor(64.0))) / 2.0
    torch.testing.assert_close(logits, expected + net.classifier.bias, rtol=0, atol=1e-5)
    # between the CAM's mean and its maximum: a single hot cell raises the logit, unlike the mean
    assert torch.all(logits - net.classifier.bias >= flat.mean(2) - 1e-6)
    assert torch.all(logits - net.classifier.bias <= flat.amax(2) + 1e-6)


def test_lse_pooling_lets_one_hot_cell_count_where_the_mean_drowns_it() -> None:
    cam = torch.zeros(1, 1, 20, 20)
    cam[0, 0, 7, 7] = 12.0  # a nodule-sized cell out of 400
    mean_net = CxrNet(1, widths=(8,), depths=(1,), strides=(2,), pooling="mean")
    lse_net = CxrNet(1, widths=(8,), depths=(1,), strides=(2,), pooling="lse", lse_r=1.0)
    with torch.no_grad():
        mean_net.classifier.bias.zero_()
        lse_net.classifier.bias.zero_()
        assert float(mean_net.pool(cam)) == pytest.approx(0.03)
        assert float(lse_net.pool(cam)) > 5.0


def test_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="pooling"):
        CxrNet(5, pooling="max")
