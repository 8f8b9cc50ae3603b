"""The OOD guard's known neighbour: images that look more like the neighbour (lateral views) than like the
training images are scored far above the threshold, in PyTorch, in NumPy and in the exported graph."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from conftest import INPUT_SIZE, _small_net

if TYPE_CHECKING:
    from training.models import OodStatistics


def _blocks(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> np.ndarray:
    """Smooth random images (8x8 blocks), the small net's "training set" family; ``shift`` moves the
    whole family, a neighbour close to it."""
    base = rng.normal(size=(n, 1, INPUT_SIZE // 8, INPUT_SIZE // 8)).astype(np.float32)
    base[:, :, :, : INPUT_SIZE // 16] += shift  # the left half brighter: another layout, same textures
    return np.repeat(np.repeat(base, 8, axis=2), 8, axis=3)


Fitted = tuple[Any, "OodStatistics", "OodStatistics"]
"""The small net, its plain statistics, and the same with a neighbour."""


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    from training.models import collect_pooled_features, fit_ood_statistics, with_contrast

    net = _small_net()
    rng = np.random.default_rng(5)
    stats = fit_ood_statistics(collect_pooled_features(net, _blocks(rng, 96)))
    neighbour = collect_pooled_features(net, _blocks(np.random.default_rng(6), 64, shift=1.5))
    return net, stats, with_contrast(stats, neighbour, weight=10.0)


def _features(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> list[np.ndarray]:
    """Pooled features of two depths (8 and 16 channels), unit spread; ``shift`` moves every image along
    one direction: a neighbour close to the training images (about 1.5 spreads away)."""
    out = []
    for width in (8, 16):
        f = rng.normal(size=(n, width))
        f[:, 0] += shift
        out.append(f)
    return out


def test_images_nearer_the_neighbour_are_refused_and_the_others_are_not() -> None:
    """The distance alone lets most of the neighbour through at a 99 % threshold; with the term nearly
    all of it scores above the same quantile of fresh training-like images, and those barely move."""
    from training.models import fit_ood_statistics, mahalanobis_score, with_contrast

    rng = np.random.default_rng(5)
    plain = fit_ood_statistics(_features(rng, 4000), shrinkage=0.01)
    contrasted = with_contrast(plain, _features(rng, 4000, shift=3.0), weight=10.0)
    own, other = _features(rng, 2000), _features(rng, 2000, shift=3.0)

    plain_threshold = np.quantile(mahalanobis_score(own, plain), 0.99)
    assert np.mean(mahalanobis_score(other, plain) <= plain_threshold) > 0.5  # the gap this term closes
    threshold = np.quantile(mahalanobis_score(own, contrasted), 0.99)
    assert np.mean(mahalanobis_score(other, contrasted) > threshold) > 0.9
    # An image nearer the training mean keeps its score exactly: the term is zero there.
    nearer_own = np.abs(own[0][:, 0]) < 0.5
    np.testing.assert_array_equal(
        mahalanobis_score([f[nearer_own] for f in own], contrasted),
        mahalanobis_score([f[nearer_own] for f in own], plain),
    )


def test_the_exported_graph_computes_the_neighbour_term(fitted: Fitted, tmp_path: Path) -> None:
    import onnxruntime as ort

    from training.export import export_onnx
    from training.models import GuardedCxrNet, collect_pooled_features, mahalanobis_score

    net, _, contrasted = fitted
    rng = np.random.default_rng(12)
    batch = np.concatenate([_blocks(rng, 3), _blocks(rng, 3, shift=1.5)])
    report = export_onnx(
        GuardedCxrNet(net, contrasted),
        {"image": batch[:2]},
        ["logits", "cam", "ood"],
        tmp_path / "guarded.onnx",
        metadata={},
        parity_outputs=["logits", "ood"],
    )
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (ood,) = session.run(["ood"], {"image": batch})
    reference = mahalanobis_score(collect_pooled_features(net, batch), contrasted)
    np.testing.assert_allclose(ood, reference, rtol=1e-3, atol=1e-3)
    assert reference[3:].min() > reference[:3].max()


def test_a_neighbour_that_does_not_fit_the_statistics_is_refused(fitted: Fitted) -> None:
    from training.models import with_contrast

    _, plain, _ = fitted
    widths = [len(m) for m in plain.means]
    good = [np.zeros((4, w)) for w in widths]
    with pytest.raises(ValueError, match="positive"):
        with_contrast(plain, good, weight=0.0)
    with pytest.raises(ValueError, match="per depth"):
        with_contrast(plain, good[:-1], weight=1.0)
    with pytest.raises(ValueError, match="per depth"):
        with_contrast(plain, [*good[:-1], np.zeros((4, widths[-1] + 1))], weight=1.0)


def test_the_exported_graph_adds_every_neighbour_term_as_the_numpy_reference(
    fitted: Fitted, tmp_path: Path
) -> None:
    """Two neighbours (a shifted family and the training family mirrored left-right): the graph's score
    is the base distance plus each weighted term, as :func:`mahalanobis_score` computes it, and mirrored
    images score above the training-like ones."""
    import onnxruntime as ort

    from training.export import export_onnx
    from training.models import GuardedCxrNet, collect_pooled_features, mahalanobis_score, with_neighbour

    net, _, contrasted = fitted
    flipped = np.ascontiguousarray(_blocks(np.random.default_rng(7), 64, shift=1.5)[..., ::-1])
    both = with_neighbour(contrasted, "mirrored", collect_pooled_features(net, flipped), weight=5.0)
    assert [nb.name for nb in both.neighbours] == ["lateral", "mirrored"]
    rng = np.random.default_rng(13)
    own = _blocks(rng, 3, shift=1.5)
    batch = np.concatenate([own, np.ascontiguousarray(_blocks(rng, 3, shift=1.5)[..., ::-1])])
    report = export_onnx(
        GuardedCxrNet(net, both),
        {"image": batch[:2]},
        ["logits", "cam", "ood"],
        tmp_path / "guarded.onnx",
        metadata={},
        parity_outputs=["logits", "ood"],
    )
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (ood,) = session.run(["ood"], {"image": batch})
    features = collect_pooled_features(net, batch)
    reference = mahalanobis_score(features, both)
    np.testing.assert_allclose(ood, reference, rtol=1e-3, atol=1e-3)
    # The mirrored term is what the second neighbour adds on top of the lateral-only score.
    assert (reference[3:] - mahalanobis_score(features[:], contrasted)[3:]).min() > 0.0
    with pytest.raises(ValueError, match="already"):
        with_neighbour(both, "mirrored", collect_pooled_features(net, flipped), weight=1.0)
