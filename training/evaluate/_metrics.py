"""Metrics in plain numpy, so they are the same in training, tests and the promotion gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


def sigmoid(x: ArrayLike) -> NDArray[np.float64]:
    z = np.asarray(x, dtype=np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def _check(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    y = np.asarray(labels).astype(np.int8).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} and {s.size}).")
    return y, s


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve by the rank statistic (ties count one half); NaN if one class is absent."""
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks over ties, vectorised: rank of a value = mean of the positions it occupies
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    y_sorted = y[order]
    s_sorted = s[order]
    distinct = np.flatnonzero(np.diff(s_sorted)) if s.size > 1 else np.array([], dtype=int)
    idx = np.concatenate((distinct, [s.size - 1]))
    tps = np.cumsum(y_sorted)[idx]
    fps = (idx + 1) - tps
    n_pos = max(int(y.sum()), 1)
    n_neg = max(int(y.size - y.sum()), 1)
    return np.concatenate(([0.0], fps / n_neg)), np.concatenate(([0.0], tps / n_pos))


def bootstrap_auroc_ci(
    labels: ArrayLike, scores: ArrayLike, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the AUROC (resampling cases with replacement).

    Vectorised: a resample is a vector of case counts per distinct score, and its AUROC (ties
    counting one half) follows from cumulative positive and negative weights, 64 resamples at a time.
    Resamples where one class is absent are dropped.
    """
    y, s = _check(labels, scores)
    n = y.size
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(s, return_inverse=True)
    k = unique.size
    values: list[NDArray[np.float64]] = []
    done = 0
    while done < n_boot:
        b = min(64, n_boot - done)
        idx = np.stack([rng.integers(0, n, n) for _ in range(b)])
        keys = (np.arange(b)[:, None] * k + inverse[idx]).ravel()
        pos = np.bincount(keys, weights=(y[idx] == 1).ravel(), minlength=b * k).reshape(b, k)
        neg = np.bincount(keys, weights=(y[idx] == 0).ravel(), minlength=b * k).reshape(b, k)
        below = np.cumsum(neg, axis=1) - neg
        num = (pos * (below + 0.5 * neg)).sum(axis=1)
        den = pos.sum(axis=1) * neg.sum(axis=1)
        values.append(num[den > 0] / den[den > 0])
        done += b
    flat = np.concatenate(values) if values else np.zeros(0)
    if flat.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(flat, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def threshold_for_sensitivity(
    labels: ArrayLike, probs: ArrayLike, target: float = 0.9, *, free_sensitivity: bool = False
) -> float:
    """The highest threshold whose sensitivity reaches ``target`` (a triage tool favours sensitivity).

    With ``free_sensitivity`` the threshold is then lowered as far as it goes without letting one more
    negative through: to the middle (in logit space) of the gap between the highest negative below it and
    the next positive. Sensitivity rises where it costs no specificity on these data (a finding the model
    separates perfectly is no longer missed 15% of the time by design), and the threshold sits in a gap
    between the classes instead of on a positive's score, which leaves a margin on both sides.
    """
    y, p = _check(labels, probs)
    positives = np.sort(p[y == 1])[::-1]
    if positives.size == 0:
        return 0.5
    k = int(np.ceil(target * positives.size)) - 1
    threshold = float(positives[min(max(k, 0), positives.size - 1)])
    negatives = p[(y == 0) & (p < threshold)]
    if not free_sensitivity or negatives.size == 0:
        return threshold
    highest_negative = float(negatives.max())
    next_positive = float(positives[positives > highest_negative].min())
    return _logit_middle(highest_negative, next_positive)


def _logit_middle(a: float, b: float) -> float:
    """The probability halfway between ``a`` and ``b`` on the logit scale."""
    eps = 1e-12
    la, lb = (float(np.log(max(v, eps)) - np.log(max(1.0 - v, eps))) for v in (a, b))
    return float(1.0 / (1.0 + np.exp(-(la + lb) / 2.0)))


def expected_calibration_error(labels: ArrayLike, probs: ArrayLike, *, n_bins: int = 10) -> float:
    """ECE with equal-width bins: the case-weighted mean gap between confidence and observed frequency."""
    y, p = _check(labels, probs)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


def fit_temperature(logits: ArrayLike, labels: ArrayLike) -> float:
    """One temperature T for all outputs minimising the validation NLL of sigmoid(z / T)."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()

    def nll(t: float) -> float:
        p = np.clip(sigmoid(z / t), 1e-7, 1 - 1e-7)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

    # golden-section search on log T: the NLL is unimodal in T for a single scale
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(80):
        if nll(float(np.exp(a))) < nll(float(np.exp(b))):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return float(np.exp((lo + hi) / 2))


def pointing_game(cams: ArrayLike, masks: ArrayLike) -> float:
    """Share of (image, finding) pairs whose CAM maximum falls inside the ground-truth mask.

    ``cams`` and ``masks`` have the same shape ``[M, H, W]``; pass only positive findings.
    """
    c = np.asarray(cams, dtype=np.float64)
    m = np.asarray(masks).astype(bool)
    if c.shape != m.shape:
        raise ValueError(f"CAMs {c.shape} and masks {m.shape} must have the same shape.")
    if c.shape[0] == 0:
        return float("nan")
    flat = c.reshape(c.shape[0], -1).argmax(axis=1)
    return float(m.reshape(m.shape[0], -1)[np.arange(c.shape[0]), flat].mean())


@dataclass(frozen=True)
class BinaryReport:
    auroc: float
    auroc_ci_low: float
    auroc_ci_high: float
    threshold: float
    sensitivity: float
    specificity: float
    ece: float
    prevalence: float
    n: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def binary_report(
    labels: ArrayLike, probs: ArrayLike, threshold: float, *, n_boot: int = 1000, seed: int = 0
) -> BinaryReport:
    """Discrimination, operating point and calibration of one binary output."""
    y, p = _check(labels, probs)
    lo, hi = bootstrap_auroc_ci(y, p, n_boot=n_boot, seed=seed)
    pred = p >= threshold
    n_pos = max(int(y.sum()), 1)
    n_neg = max(int((1 - y).sum()), 1)
    return BinaryReport(
        auroc=auroc(y, p),
        auroc_ci_low=lo,
        auroc_ci_high=hi,
        threshold=float(threshold),
        sensitivity=float((pred & (y == 1)).sum() / n_pos),
        specificity=float((~pred & (y == 0)).sum() / n_neg),
        ece=expected_calibration_error(y, p),
        prevalence=float(y.mean()) if y.size else float("nan"),
        n=int(y.size),
    )
