"""Out-of-distribution score inside the graph: Mahalanobis distance on pooled features at several depths.

Why this method (Lee et al., 2018, "A simple unified framework for detecting out-of-distribution samples
and adversarial attacks", NeurIPS; comparisons on chest radiographs report feature-space distances well
above softmax or energy scores for non-chest and wrong-anatomy inputs): a multi-label sigmoid
classifier trained on phantoms has no "none of these" output, and its confidence on an image unlike
anything it saw is arbitrary (uniform noise scored pneumothorax 1.0). The distance of an image's
intermediate features to the training distribution does not depend on what the classifier decided, and
costs one small matrix product per depth.

For each depth ``l`` (the stem and every residual block) the feature map is averaged over space, giving
``f_l`` of ``D_l`` channels; the last block's map is also averaged per quadrant (``4 D_L`` values), since
global averages ignore layout and an upside-down or turned chest would pass on them alone. With the
training mean ``mu_l`` and a shared (class-independent) covariance ``S_l`` of the training images,
shrunk towards a scaled identity so dead channels keep it invertible,

    score = mean_l ( (f_l - mu_l)^T S_l^{-1} (f_l - mu_l) / D_l )

Dividing by ``D_l`` puts every depth on the same scale (about 1 for a training image), so shallow
texture statistics (noise, photographs, other modalities) and deep shape statistics (other anatomy,
wrong orientation) weigh alike. ``mu_l`` and ``S_l^{-1}`` are constants of the exported graph: the score
travels with the model version and the server computes nothing but ONNX Runtime's output ``ood``.

**Known neighbours.** A lateral chest film tagged as frontal is close to the frontal training images:
same anatomy, same textures, and a distance to the frontal features alone let most lateral phantoms
through. A frontal film mirrored left-right (a wrong orientation flag, or situs inversus: the heart on
the right) is closer still: every texture and every global average is the same, only the layout differs.
Where the training knows what such a neighbour looks like (an :class:`OodNeighbour`: the mean features of
lateral views, or of the training images flipped left-right, with the frontal images' precision), the
score adds, for each neighbour ``k``,

    weight_k * max(0, score - score_k)

where ``score_k`` is the same distance to the neighbour's mean. With one shared precision the
difference is linear in the features (a linear discriminant between the two means), zero for an image
nearer the frontal mean and growing as the image lies on the neighbour's side: a film that looks more
like a lateral (or a mirrored frontal) than a frontal is refused however near both it is. The threshold
is still the validation frontal images' quantile of the whole score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from training.models._cxr import CxrNet


def pooled_features(net: CxrNet, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Spatially averaged features after the stem and after every residual block, the last block's
    features averaged per quadrant (a 2x2 grid, ``4 * D_L`` values), and the last map.

    Returns ``([f_0 [N, D_0], ..., f_L [N, D_L], g_L [N, 4 D_L]], last_feature_map)``.
    """
    x = net.stem(image)
    pooled = [x.mean(dim=(2, 3))]
    for block in net.features:
        x = block(x)
        pooled.append(x.mean(dim=(2, 3)))
    # The last map also averaged over a 2x2 grid of quadrants: global averages are blind to layout,
    # so a chest turned by 90 or 180 degrees would otherwise look much like an upright one.
    pooled.append(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1))
    return pooled, x


@dataclass(frozen=True)
class OodNeighbour:
    """A known neighbour of the training images the score must tell apart.

    Attributes:
        name: short name (``lateral``, ``mirrored``), also the refusal-set kind it stands for.
        means: ``[D_l]`` per depth: the neighbour's mean features, float64.
        n: images ``means`` were estimated on.
        weight: weight of the neighbour's term in the score.
    """

    name: str
    means: tuple[NDArray[np.float64], ...]
    n: int
    weight: float


@dataclass(frozen=True)
class OodStatistics:
    """Training statistics of the pooled features: one mean and one precision matrix per depth.

    Attributes:
        means: ``[D_l]`` per depth, float64.
        precisions: ``[D_l, D_l]`` per depth (inverse of the shrunk covariance), float64.
        shrinkage: weight of the scaled identity in the shrunk covariance.
        n: training images the statistics were estimated on.
        neighbours: the known neighbours the score must tell apart (lateral views, mirrored frontal
            films), in the order their terms are added.
    """

    means: tuple[NDArray[np.float64], ...]
    precisions: tuple[NDArray[np.float64], ...]
    shrinkage: float
    n: int
    neighbours: tuple[OodNeighbour, ...] = ()

    def neighbour(self, name: str) -> OodNeighbour | None:
        """The neighbour called ``name``, or None."""
        return next((nb for nb in self.neighbours if nb.name == name), None)

    @property
    def dims(self) -> list[int]:
        """Channels per depth."""
        return [len(m) for m in self.means]


def fit_ood_statistics(features: Sequence[NDArray[np.floating]], *, shrinkage: float = 0.05) -> OodStatistics:
    """Estimate mean and shared precision per depth from training features ``[N, D_l]`` per depth.

    The covariance is ``(1 - a) S + a * (trace(S) / D) I`` (``a`` = ``shrinkage``): ReLU channels that
    never fire on the training set have zero variance, and the shrinkage keeps the inverse bounded there
    while changing the well-estimated directions little.
    """
    if not 0.0 < shrinkage < 1.0:
        raise ValueError(f"shrinkage must lie strictly between 0 and 1; got {shrinkage}.")
    means, precisions = [], []
    n = len(features[0])
    for f in features:
        f64 = np.asarray(f, dtype=np.float64)
        if f64.ndim != 2 or len(f64) != n or n < 2:
            raise ValueError("Every depth needs the same number (at least 2) of [N, D] feature rows.")
        mu = f64.mean(axis=0)
        centred = f64 - mu
        cov = centred.T @ centred / (n - 1)
        scale = max(float(np.trace(cov)) / len(mu), 1e-12)
        shrunk = (1.0 - shrinkage) * cov + shrinkage * scale * np.eye(len(mu))
        precision = np.linalg.inv(shrunk)
        means.append(mu)
        precisions.append(0.5 * (precision + precision.T))  # exactly symmetric
    return OodStatistics(means=tuple(means), precisions=tuple(precisions), shrinkage=shrinkage, n=n)


def with_contrast(
    stats: OodStatistics, features: Sequence[NDArray[np.floating]], *, weight: float
) -> OodStatistics:
    """``stats`` with the ``lateral`` neighbour (see :func:`with_neighbour`)."""
    return with_neighbour(stats, "lateral", features, weight=weight)


def with_neighbour(
    stats: OodStatistics, name: str, features: Sequence[NDArray[np.floating]], *, weight: float
) -> OodStatistics:
    """``stats`` with one more known neighbour to tell apart, called ``name``: its features ``[N, D_l]``
    per depth (lateral views, mirrored frontal films), weighted by ``weight`` in the score (see the
    module docstring).

    Raises:
        ValueError: For a weight that is not positive, a name already used, or features whose depths or
            widths differ from ``stats``.
    """
    if stats.neighbour(name) is not None:
        raise ValueError(f"The statistics already have a neighbour called {name!r}.")
    if not weight > 0.0:
        raise ValueError(f"The contrast weight must be positive; got {weight}.")
    shape_error = "The neighbour's features need one [N, D_l] array (N >= 1) per depth of the statistics."
    if len(features) != len(stats.means) or len(features[0]) < 1:
        raise ValueError(shape_error)
    means = []
    for f, mu in zip(features, stats.means, strict=True):
        f64 = np.asarray(f, dtype=np.float64)
        if f64.ndim != 2 or f64.shape[1] != len(mu) or len(f64) != len(features[0]):
            raise ValueError(shape_error)
        means.append(f64.mean(axis=0))
    added = OodNeighbour(name=name, means=tuple(means), n=len(features[0]), weight=float(weight))
    return replace(stats, neighbours=(*stats.neighbours, added))


def _distance(
    features: Sequence[NDArray[np.floating]], means: Sequence[NDArray[np.float64]], stats: OodStatistics
) -> NDArray[np.float64]:
    total = np.zeros(len(features[0]), dtype=np.float64)
    for f, mu, precision in zip(features, means, stats.precisions, strict=True):
        d = np.asarray(f, dtype=np.float64) - mu
        total += np.einsum("nd,de,ne->n", d, precision, d) / len(mu)
    return total / len(stats.means)


def mahalanobis_score(features: Sequence[NDArray[np.floating]], stats: OodStatistics) -> NDArray[np.float64]:
    """The OOD score in NumPy (float64), the reference the exported graph is checked against."""
    base = _distance(features, stats.means, stats)
    score = base.copy()
    for nb in stats.neighbours:
        score += nb.weight * np.maximum(base - _distance(features, nb.means, stats), 0.0)
    return score


class GuardedCxrNet(nn.Module):
    """``CxrNet`` plus the OOD score: ``forward`` returns ``(logits, cam, ood)``.

    The logits and CAM are computed exactly as :meth:`CxrNet.forward` does, from the same pass.
    """

    def __init__(self, net: CxrNet, stats: OodStatistics) -> None:
        super().__init__()
        self.net = net
        self.depths = len(stats.means)
        for i, (mu, precision) in enumerate(zip(stats.means, stats.precisions, strict=True)):
            self.register_buffer(f"ood_mean_{i}", torch.tensor(mu, dtype=torch.float32))
            # Scaled by 1 / (D_l * L) here so the graph needs no division.
            scaled = precision / (len(mu) * self.depths)
            self.register_buffer(f"ood_precision_{i}", torch.tensor(scaled, dtype=torch.float32))
        # Each neighbour's means as buffers ``ood_neighbour_<j>_mean_<i>``; the weights are constants.
        self.neighbour_weights = [float(nb.weight) for nb in stats.neighbours]
        for j, nb in enumerate(stats.neighbours):
            for i, mu in enumerate(nb.means):
                self.register_buffer(f"ood_neighbour_{j}_mean_{i}", torch.tensor(mu, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(logits [N, K], cam [N, K, h, w], ood [N])`` for a batch of preprocessed images."""
        pooled, feats = pooled_features(self.net, image)
        weight = self.net.classifier.weight[:, :, None, None]
        cam = torch.nn.functional.conv2d(feats, weight)
        logits = self.net.pool(cam)
        base = self._distance(pooled, "ood_mean")
        score = base
        for j, weight in enumerate(self.neighbour_weights):
            nearer = torch.clamp(base - self._distance(pooled, f"ood_neighbour_{j}_mean"), min=0.0)
            score = score + weight * nearer
        return logits, cam, score

    def _distance(self, pooled: list[torch.Tensor], means: str) -> torch.Tensor:
        score = torch.zeros(pooled[0].shape[0], dtype=pooled[0].dtype, device=pooled[0].device)
        for i, f in enumerate(pooled):
            d = f - getattr(self, f"{means}_{i}")
            score = score + ((d @ getattr(self, f"ood_precision_{i}")) * d).sum(dim=1)
        return score


def collect_pooled_features(
    net: CxrNet, x: NDArray[np.float32], *, batch_size: int = 64
) -> list[NDArray[np.float32]]:
    """Pooled features per depth of ``x`` ``[N, 1, S, S]`` (eval mode, batches), as ``[N, D_l]`` arrays."""
    net.eval()
    chunks: list[list[NDArray[np.float32]]] = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            pooled, _ = pooled_features(net, batch)
            chunks.append([p.numpy().astype(np.float32) for p in pooled])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
