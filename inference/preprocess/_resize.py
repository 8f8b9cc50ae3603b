"""numpy-only resampling: area averaging to shrink, bilinear to enlarge, nearest for masks.

Each axis is handled on its own (the transforms are separable). Area averaging integrates the image as
piecewise constant pixels through a cumulative sum, so any factor, integer or not, costs O(pixels).
"""

from __future__ import annotations

import numpy as np


def _area_axis0(arr: np.ndarray, out_len: int) -> np.ndarray:
    n = arr.shape[0]
    integral = np.zeros((n + 1, *arr.shape[1:]), dtype=np.float32)
    np.cumsum(arr, axis=0, dtype=np.float32, out=integral[1:])
    edges = np.linspace(0.0, n, out_len + 1)
    base = np.minimum(np.floor(edges).astype(np.intp), n - 1)
    frac = (edges - base).astype(np.float32)
    # Integral at a fractional edge: whole pixels before it plus the covered part of the next one.
    at_edges = integral[base] + frac.reshape(-1, *([1] * (arr.ndim - 1))) * (
        integral[base + 1] - integral[base]
    )
    return np.asarray(np.diff(at_edges, axis=0) * np.float32(out_len / n), dtype=np.float32)


def _bilinear_axis0(arr: np.ndarray, out_len: int) -> np.ndarray:
    n = arr.shape[0]
    # Half-pixel centres: output centre i maps to input coordinate (i + 0.5) * n / out_len - 0.5.
    coords = np.clip((np.arange(out_len) + 0.5) * (n / out_len) - 0.5, 0.0, n - 1)
    lower = np.floor(coords).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    weight = (coords - lower).astype(np.float32).reshape(-1, *([1] * (arr.ndim - 1)))
    return np.asarray(arr[lower] * (1 - weight) + arr[upper] * weight, dtype=np.float32)


def _resize_axis0(arr: np.ndarray, out_len: int) -> np.ndarray:
    if out_len == arr.shape[0]:
        return arr.astype(np.float32, copy=False)
    if out_len < arr.shape[0]:
        return _area_axis0(arr, out_len)
    return _bilinear_axis0(arr, out_len)


def resize(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float image: area average along shrinking axes, bilinear along enlarging ones."""
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"Target shape must be positive, not {shape}.")
    rows = _resize_axis0(np.asarray(arr, dtype=np.float32), shape[0])
    return np.ascontiguousarray(_resize_axis0(rows.T, shape[1]).T)


def bilinear(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float map bilinearly (half-pixel centres), whatever the direction."""
    rows = _bilinear_axis0(np.asarray(arr, dtype=np.float32), shape[0])
    return np.ascontiguousarray(_bilinear_axis0(rows.T, shape[1]).T)


def nearest(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D array (e.g. a boolean mask) by nearest neighbour, keeping its dtype."""
    src_rows = np.minimum(
        ((np.arange(shape[0]) + 0.5) * arr.shape[0] / shape[0]).astype(np.intp), arr.shape[0] - 1
    )
    src_cols = np.minimum(
        ((np.arange(shape[1]) + 0.5) * arr.shape[1] / shape[1]).astype(np.intp), arr.shape[1] - 1
    )
    return arr[np.ix_(src_rows, src_cols)]
