"""The OOD guard of ``cxr-findings``: fitted on training features, thresholded on validation, evaluated
on a refusal set.

The guard (``training.models.GuardedCxrNet``) is exported as the graph's third output ``ood``; its
threshold and how it was set go into the ``dxassist.ood`` metadata, its figures into the metrics (and so
into MLflow) and the model card.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.pipeline._profiles import ImagingConfig

logger = logging.getLogger(__name__)

OOD_METHOD = "mahalanobis-pooled-multidepth"
"""Name of the OOD score written into the metadata (see ``training.models._ood``)."""


@dataclass(frozen=True)
class GuardOutcome:
    """The fitted guard and what was measured about it.

    Attributes:
        guarded: ``GuardedCxrNet`` (eval mode) to export.
        threshold: score above which an image is not assessable.
        metrics: ``ood_*`` figures (threshold, pass rates, AUROC overall and per kind).
        metadata: the ``dxassist.ood`` metadata value.
        val_scores: the OOD score of every validation image (the drift reference's ``ood`` signal).
        refusal_root: the folder of the OOD evaluation set (its ``files`` are relative to it).
        refusal_files: the OOD evaluation set's files, in the order of ``refusal_x``.
        refusal_x: the OOD evaluation set's prepared arrays.
        refusal_kinds: the kind of each image of the OOD evaluation set.
    """

    guarded: Any
    threshold: float
    metrics: dict[str, float]
    metadata: dict[str, Any]
    val_scores: NDArray[np.float64]
    refusal_root: Path
    refusal_files: list[str]
    refusal_x: NDArray[np.float32]
    refusal_kinds: NDArray[Any]


def ood_scores(guarded: Any, x: NDArray[np.float32], *, batch_size: int = 64) -> NDArray[np.float64]:
    """The guard's OOD score of every image of ``x`` ``[N, 1, S, S]``."""
    import torch

    guarded.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            out.append(guarded(batch)[2].numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def _generated(root: Path, wanted: dict[str, Any], build: Callable[[], Path], what: str) -> Path:
    """``root`` as it is when its ``dataset.json`` says ``wanted`` (same recipe), else ``build()`` it."""
    recipe: dict[str, Any] = {}
    try:
        recipe = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recipe = {}
    if isinstance(recipe, dict) and {key: recipe.get(key) for key in wanted} == wanted:
        return root
    logger.info("Generating %s into %s.", what, root)
    return build()


def ood_set(cfg: ImagingConfig) -> Path:
    """Generate the OOD evaluation set into ``out_dir/ood`` unless the same recipe is already there."""
    from training.data import OOD_KINDS, build_ood_set

    root = cfg.out_dir / "ood"
    wanted = {"seed": cfg.seed, "per_kind": cfg.ood_eval_per_kind, "kinds": list(OOD_KINDS)}
    return _generated(
        root,
        wanted,
        lambda: build_ood_set(root, per_kind=cfg.ood_eval_per_kind, seed=cfg.seed),
        "the out-of-distribution evaluation set",
    )


def contrast_laterals(cfg: ImagingConfig, params: Any) -> NDArray[np.float32] | None:
    """The lateral phantoms tagged frontal the guard is fitted to tell apart (prepared arrays), drawn with
    another seed than the evaluation set's and kept in ``out_dir/ood-laterals``; None when the term is
    off (``ood_contrast_laterals`` 0, or a data set other than the synthetic one)."""
    from training.data import build_ood_set, load_imaging_dataset

    if cfg.ood_contrast_laterals == 0 or cfg.dataset != "synthetic":
        return None
    root = cfg.out_dir / "ood-laterals"
    seed = cfg.seed + 1  # never the evaluation set's laterals
    n = cfg.ood_contrast_laterals
    _generated(
        root,
        {"seed": seed, "per_kind": n, "kinds": ["lateral"]},
        lambda: build_ood_set(root, per_kind=n, seed=seed, kinds=("lateral",)),
        f"{n} lateral phantoms for the OOD guard",
    )
    x: NDArray[np.float32] = load_imaging_dataset(root, params, with_masks=False, workers=cfg.workers).x
    return x


def fit_guard(
    cfg: ImagingConfig,
    model: Any,
    params: Any,
    *,
    x_train: NDArray[np.float32],
    x_val: NDArray[np.float32],
    x_test: NDArray[np.float32],
) -> GuardOutcome:
    """Fit the guard on ``x_train``, threshold it on ``x_val``, measure it on ``x_test`` and the OOD set."""
    from training.data import load_imaging_dataset, read_ood_kinds
    from training.models import GuardedCxrNet, collect_pooled_features, fit_ood_statistics, with_neighbour

    stats = fit_ood_statistics(collect_pooled_features(model, x_train), shrinkage=cfg.ood_shrinkage)
    laterals = contrast_laterals(cfg, params)
    if laterals is not None:
        lateral = collect_pooled_features(model, laterals)
        stats = with_neighbour(stats, "lateral", lateral, weight=cfg.ood_contrast_weight)
    if cfg.ood_mirror_weight > 0:
        # The training images flipped left-right: the model is not mirror-invariant (chest anatomy is
        # lateralised), so a film with the heart on the wrong side is outside what it knows.
        mirrored = collect_pooled_features(model, np.ascontiguousarray(x_train[..., ::-1]))
        stats = with_neighbour(stats, "mirrored", mirrored, weight=cfg.ood_mirror_weight)
    guarded = GuardedCxrNet(model, stats).eval()
    val = ood_scores(guarded, x_val)
    test = ood_scores(guarded, x_test)

    root = ood_set(cfg)
    arrays = load_imaging_dataset(root, params, with_masks=False, workers=cfg.workers)
    kinds = np.asarray(read_ood_kinds(root))
    refused = ood_scores(guarded, arrays.x)
    base = {
        "method": OOD_METHOD,
        "pass_rate": cfg.ood_pass_rate,
        "depths": len(stats.means),
        "dims": stats.dims,
        "shrinkage": stats.shrinkage,
        "fitted_on": stats.n,
    }
    described = {
        "lateral": "lateral chest phantoms tagged frontal",
        "mirrored": "training frontal films flipped left-right",
    }
    neighbours = [
        {"name": nb.name, "neighbour": described[nb.name], "fitted_on": nb.n, "weight": nb.weight}
        for nb in stats.neighbours
    ]
    lateral_nb = stats.neighbour("lateral")
    if lateral_nb is not None:
        # Kept as the single ``contrast`` object servers before the neighbour list read.
        base["contrast"] = {
            k: v for k, v in neighbours[stats.neighbours.index(lateral_nb)].items() if k != "name"
        }
    if neighbours:
        base["neighbours"] = neighbours
    threshold, metrics, metadata = guard_figures(cfg, base, val=val, test=test, refused=refused, kinds=kinds)
    return GuardOutcome(
        guarded=guarded,
        threshold=threshold,
        metrics=metrics,
        metadata=metadata,
        val_scores=val,
        refusal_root=root,
        refusal_files=list(arrays.files),
        refusal_x=arrays.x,
        refusal_kinds=kinds,
    )


def guard_figures(
    cfg: ImagingConfig,
    base: dict[str, Any],
    *,
    val: NDArray[np.float64],
    test: NDArray[np.float64],
    refused: NDArray[np.float64],
    kinds: NDArray[Any],
) -> tuple[float, dict[str, float], dict[str, Any]]:
    """The threshold (the ``ood_pass_rate`` quantile of ``val``), the ``ood_*`` figures and the metadata.

    The pipeline calls it twice: on the PyTorch scores when the guard is fitted, then on the scores
    the exported graph gives to the inputs the server prepares, which are the ones written into the file.
    """
    from training.evaluate import auroc

    threshold = float(np.quantile(val, cfg.ood_pass_rate, method="higher"))
    metrics: dict[str, float] = {
        "ood_threshold": threshold,
        "ood_val_pass_rate": float(np.mean(val <= threshold)),
        "ood_test_pass_rate": float(np.mean(test <= threshold)),
        "ood_test_score_median": float(np.median(test)),
        "ood_refusal_rate": float(np.mean(refused > threshold)),
        "ood_auroc": auroc(
            np.concatenate([np.zeros(len(test)), np.ones(len(refused))]), np.concatenate([test, refused])
        ),
        "ood_eval_n": float(len(refused)),
    }
    for kind in dict.fromkeys(kinds.tolist()):
        sel = kinds == kind
        metrics[f"ood_refusal_rate_{kind}"] = float(np.mean(refused[sel] > threshold))
        metrics[f"ood_auroc_{kind}"] = auroc(
            np.concatenate([np.zeros(len(test)), np.ones(int(sel.sum()))]),
            np.concatenate([test, refused[sel]]),
        )
    metadata = {
        **base,
        "threshold": threshold,
        "validation_pass_rate": metrics["ood_val_pass_rate"],
    }
    logger.info(
        "OOD guard: threshold %.3f, test pass rate %.3f, refusal set AUROC %.3f (refused %.3f).",
        threshold,
        metrics["ood_test_pass_rate"],
        metrics["ood_auroc"],
        metrics["ood_refusal_rate"],
    )
    return threshold, metrics, metadata


def drift_reference(
    val_ood: NDArray[np.float64], p_val: NDArray[np.float64], labels: tuple[str, ...], *, bins: int = 10
) -> dict[str, Any]:
    """The ``dxassist.drift_reference`` metadata: quantile bins of the validation OOD scores and of every
    finding's calibrated probability, which the server's drift monitor compares its results with
    (``inference.runtime.DriftReference``)."""
    samples = {"ood": val_ood, **{f"p_{name}": p_val[:, k] for k, name in enumerate(labels)}}
    signals: dict[str, Any] = {}
    for name, values in samples.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        signals[name] = {"edges": edges.tolist(), "fractions": (counts / max(len(v), 1)).tolist()}
    return {"method": "psi-quantile-bins", "bins": bins, "n": int(len(val_ood)), "signals": signals}


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def guard_card_section(cfg: ImagingConfig, metrics: dict[str, float]) -> str:
    """The model card's section on the OOD guard: method, why, threshold, figures per kind."""
    from training.data import OOD_KINDS

    rows = "\n".join(
        f"| {kind} | {_fmt(metrics.get(f'ood_auroc_{kind}', math.nan))} "
        f"| {_fmt(metrics.get(f'ood_refusal_rate_{kind}', math.nan))} |"
        for kind in OOD_KINDS
    )
    n_kind = cfg.ood_eval_per_kind
    contrast = (
        f"""
A known neighbour: a lateral film tagged as frontal is close to the frontal training images (same
anatomy and textures), and the distance alone let most lateral phantoms through. The score therefore adds
{cfg.ood_contrast_weight:g} x max(0, distance to the frontal mean - distance to the mean of
{cfg.ood_contrast_laterals} lateral phantoms), with the frontal precision: a linear discriminant between
the two means, zero for an image nearer the frontal one. Those laterals were drawn with another seed than
the refusal set's `lateral` kind, but by the same generator, so the `lateral` row below is a phantom
figure: how a real lateral film fares was not measured.
"""
        if cfg.ood_contrast_laterals and cfg.dataset == "synthetic"
        else ""
    )
    mirror = (
        f"""
A second known neighbour: a frontal film mirrored left-right (a wrong orientation flag, or situs
inversus: the heart on the right) has every texture and global average of a training image; only its
layout differs, and the model is not mirror-invariant (chest anatomy is lateralised). The score adds
{cfg.ood_mirror_weight:g} x max(0, distance to the frontal mean - distance to the mean of the training
images flipped left-right), the same linear discriminant. The `mirrored` row below is measured on fresh
phantoms, flipped.
"""
        if cfg.ood_mirror_weight > 0
        else ""
    )
    return f"""## Out-of-distribution guard: when the model does not answer
The graph has a third output, `ood`: the Mahalanobis distance of the image's spatially pooled features,
after the stem and after every residual block (the last one also per quadrant of a 2x2 grid, so layout
counts: a turned chest is not an upright one), to the training images' features (one mean and one shared
covariance per depth, shrunk towards a scaled identity by {cfg.ood_shrinkage}; each depth's squared
distance divided by its number of channels, then averaged over depths). The means and precision matrices
are constants of the ONNX graph, so the score costs one small matrix product per depth and travels with
this version.
{contrast}{mirror}
Why this score: the classifier has no "none of these" output, and its sigmoid confidence on an image
unlike its training data is arbitrary (before this guard, uniform noise scored pneumothorax 1.0). A
distance in feature space does not depend on what the classifier concluded; shallow depths see texture
and noise statistics (photographs, other modalities, noise), deep ones shape and layout (other anatomy,
wrong orientation). Feature-space distances are the method of choice in the out-of-distribution
literature for this reason (Lee et al., NeurIPS 2018), well above softmax or energy scores.

Threshold **{_fmt(metrics["ood_threshold"])}**: the {cfg.ood_pass_rate:.1%} quantile of the validation
images' scores. Above it a result is **not assessable**: no finding is positive, no heatmap is drawn, the
AI raises no priority. In-distribution pass rate on the held-out test split:
**{_fmt(metrics["ood_test_pass_rate"])}** (validation {_fmt(metrics["ood_val_pass_rate"])}).

Refusal set: {int(metrics["ood_eval_n"])} images ({n_kind} per kind) the model must refuse, generated by
`training.data.build_ood_set` and tagged as chest CR so that only the score can refuse them. AUROC of the
score between the test split and the refusal set: **{_fmt(metrics["ood_auroc"])}**; share refused at the
threshold: **{_fmt(metrics["ood_refusal_rate"])}**.

| kind | AUROC vs test split | refused at the threshold |
|---|---|---|
{rows}

Limits: the refusal set is what this project can draw or what installed packages ship; a real image that
resembles the phantoms in feature space may pass, and a real chest radiograph (which the model never saw)
will probably be refused; no real radiograph was available to measure either. The guard cannot say
whether a finding is present on an image it refuses.
"""
