"""``CxrNet``: a compact residual CNN for chest radiographs with its class activation maps in the graph.

The network ends in one linear layer applied at every position of the last feature map, so the class
activation map (CAM) of finding ``k`` is the classifier weight ``w_k`` applied to the features there
(Zhou et al., 2016). The forward pass computes the CAM first and derives the logits from it, so the
explanation is, by construction, what the score was computed from, in PyTorch and in the exported ONNX
graph: the server gets an explanation with every prediction and never needs gradients.

Two poolings turn the CAM into a logit:

- ``mean``: ``logits = cam.mean((2, 3)) + bias``, which equals ``linear(avgpool(features))`` (the
  textbook CAM head).
- ``lse``: ``logits = (logsumexp(r * cam) - log(h * w)) / r +
  bias``, a smooth maximum over the CAM cells (Pinheiro and Collobert, 2015). It lies between the mean
  (``r`` towards 0) and the maximum (``r`` large). A nodule covers one or two of the 400 cells of a 20x20
  CAM: global average pooling divides its evidence by 400, the log-sum-exp lets a single hot cell carry
  the logit, while large findings (effusion, cardiomegaly) still add evidence over many cells.
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
        pooling: ``mean`` or ``lse`` (see the module docstring).
        lse_r: sharpness ``r`` of the ``lse`` pooling.

    Input ``image`` is float32 ``[N, 1, S, S]``; :meth:`forward` returns ``(logits [N, K],
    cam [N, K, h, w])`` with ``logits == self.pool(cam)`` (``cam.mean((2, 3)) + classifier.bias`` for
    ``mean`` pooling).
    """

    def __init__(
        self,
        num_classes: int = 5,
        *,
        widths: Sequence[int] = (24, 48, 96, 192),
        depths: Sequence[int] = (1, 1, 1, 1),
        strides: Sequence[int] = (2, 2, 2, 1),
        in_channels: int = 1,
        pooling: str = "mean",
        lse_r: float = 1.0,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "lse") or lse_r <= 0:
            raise ValueError(f"pooling must be 'mean' or 'lse' with lse_r > 0; got {pooling!r}, {lse_r}.")
        self.pooling = pooling
        self.lse_r = float(lse_r)
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
        return self.pool(cam), cam

    def pool(self, cam: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, K]`` from the CAM ``[N, K, h, w]``: its mean or log-sum-exp mean, plus the bias."""
        if self.pooling == "mean":
            return cam.mean(dim=(2, 3)) + self.classifier.bias
        # log(mean(exp(r * cam))) / r, shifted by the maximum for stability; a mean rather than
        # logsumexp - log(h * w) keeps the cell count out of the traced graph (dynamic in ONNX).
        scaled = cam.flatten(2) * self.lse_r
        peak = scaled.amax(dim=2, keepdim=True)
        lme = peak.squeeze(2) + torch.log(torch.exp(scaled - peak).mean(dim=2))
        return lme / self.lse_r + self.classifier.bias
