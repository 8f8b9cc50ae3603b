"""``CxrNet``: a compact residual CNN for chest radiographs with its class activation maps in the graph.

The network ends in global average pooling and one linear layer, so the class activation map (CAM) of
finding ``k`` is the classifier weight ``w_k`` applied to the last feature map at every position
(Zhou et al., 2016). The forward pass computes the CAM first and derives the logits from it
(``logits = cam.mean((2, 3)) + bias``), which equals ``linear(avgpool(features))`` and makes the
identity hold by construction in PyTorch and in the exported ONNX graph: the server gets an
explanation with every prediction and never needs gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projected) shortcut (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        # Zero-init the last BN so every block starts as the identity: trains faster from scratch.
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CxrNet(nn.Module):
    """Multi-label finding classifier for single-channel radiographs, returning logits and CAMs.

    Args:
        num_classes: number of findings ``K``.
        widths: channels of each residual stage.
        depths: residual blocks per stage.
        strides: stride of the first block of each stage; the stem adds a stride of 2, so the CAM
            side is ``S / (2 * prod(strides))``.
        in_channels: input channels (1 for radiographs).

    Input ``image`` is float32 ``[N, 1, S, S]``; :meth:`forward` returns ``(logits [N, K],
    cam [N, K, h, w])`` with ``logits == cam.mean((2, 3)) + classifier.bias``.
    """

    def __init__(
        self,
        num_classes: int = 5,
        *,
        widths: Sequence[int] = (24, 48, 96, 192),
        depths: Sequence[int] = (1, 1, 1, 1),
        strides: Sequence[int] = (2, 2, 2, 1),
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if not (len(widths) == len(depths) == len(strides)) or not widths:
            raise ValueError(
                f"widths, depths and strides must be non-empty and of equal length; got {len(widths)}, "
                f"{len(depths)} and {len(strides)}."
            )
        self.num_classes = num_classes
        self.stride = 2
        for s in strides:
            self.stride *= s
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        channels = widths[0]
        for width, depth, stride in zip(widths, depths, strides, strict=True):
            for i in range(depth):
                blocks.append(_ResidualBlock(channels, width, stride if i == 0 else 1))
                channels = width
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, cam)`` for a batch of preprocessed images."""
        feats = self.features(self.stem(image))
        # A 1x1 convolution with the classifier weights is the CAM; it exports to one Conv node,
        # which ONNX Runtime runs faster than an Einsum.
        weight = self.classifier.weight[:, :, None, None]
        cam = F.conv2d(feats, weight)
        logits = cam.mean(dim=(2, 3)) + self.classifier.bias
        return logits, cam
