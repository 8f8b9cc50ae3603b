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
