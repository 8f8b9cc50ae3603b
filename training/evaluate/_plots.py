"""ROC and reliability plots as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from training.evaluate._metrics import auroc, roc_curve


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: Path, *, title: str) -> Path:
    """One ROC curve per entry ``name -> (labels, scores)``, AUROC in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, scores) in curves.items():
        fpr, tpr = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_calibration(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: Path, *, title: str, n_bins: int = 10
) -> Path:
    """Reliability diagram: mean predicted probability against observed frequency per bin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, probs) in curves.items():
        y = np.asarray(labels, dtype=np.float64).ravel()
        p = np.asarray(probs, dtype=np.float64).ravel()
        bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
        xs, ys = [], []
        for b in range(n_bins):
            sel = bins == b
            if sel.any():
                xs.append(p[sel].mean())
                ys.append(y[sel].mean())
        ax.plot(xs, ys, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
