"""numpy-only resampling: area averaging to shrink, bilinear to enlarge, nearest for masks.

Each axis is handled on its own (the transforms are separable). Area averaging integrates the image as
piecewise constant pixels through a cumulative sum, so any factor, integer or not, costs O(pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _area_last(arr: np.ndarray, out_len: int) -> np.ndarray:
    """Area average along the last (contiguous) axis."""
    n = arr.shape[-1]
    if 4 * out_len <= n:  # below a fourfold shrink, the segments are too short for reduceat to pay
        return _area_last_sums(arr, out_len)
    integral = np.zeros((*arr.shape[:-1], n + 1), dtype=np.float32)
    np.cumsum(arr, axis=-1, dtype=np.float32, out=integral[..., 1:])
    edges = np.linspace(0.0, n, out_len + 1)
    base = np.minimum(np.floor(edges).astype(np.intp), n - 1)
    frac = (edges - base).astype(np.float32)
    # Integral at a fractional edge: whole pixels before it plus the covered part of the next one.
    below = integral[..., base]
    at_edges = below + frac * (integral[..., base + 1] - below)
    return np.asarray(np.diff(at_edges, axis=-1) * np.float32(out_len / n), dtype=np.float32)


def _area_last_sums(arr: np.ndarray, out_len: int) -> np.ndarray:
    """Area average along the last axis when shrinking at least fourfold: the whole pixels from each
    output pixel's first edge to the next are summed per segment (``reduceat``, no running sum of the
    whole row), then the part of the pixel cut by an inner edge moves from the left output to the right
    one. Sums of a few pixels each: closer to the exact average than a float32 running sum of the row."""
    n = arr.shape[-1]
    edges = np.linspace(0.0, n, out_len + 1)
    base = np.floor(edges).astype(np.intp)  # strictly increasing: consecutive edges are >= 4 apart
    sums = np.add.reduceat(arr, base[:-1], axis=-1, dtype=np.float32)
    inner = base[1:-1]
    cut = np.take(arr, inner, axis=-1)  # the same pixels as ``arr[..., inner]``, gathered faster
    cut *= (edges[1:-1] - inner).astype(np.float32)
    sums[..., :-1] += cut
    sums[..., 1:] -= cut
    sums *= np.float32(out_len / n)
    return sums


def _bilinear_last(arr: np.ndarray, out_len: int) -> np.ndarray:
    """Bilinear interpolation along the last axis."""
    n = arr.shape[-1]
    # Half-pixel centres: output centre i maps to input coordinate (i + 0.5) * n / out_len - 0.5.
    coords = np.clip((np.arange(out_len) + 0.5) * (n / out_len) - 0.5, 0.0, n - 1)
    lower = np.floor(coords).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    weight = (coords - lower).astype(np.float32)
    return np.asarray(arr[..., lower] * (1 - weight) + arr[..., upper] * weight, dtype=np.float32)


def _resize_last(arr: np.ndarray, out_len: int) -> np.ndarray:
    if out_len == arr.shape[-1]:
        return arr.astype(np.float32, copy=False)
    if out_len < arr.shape[-1]:
        return _area_last(arr, out_len)
    return _bilinear_last(arr, out_len)


def _separable(
    arr: np.ndarray, shape: tuple[int, int], along: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    # Both passes run along contiguous memory (a cumulative sum down the columns of a C-ordered image is
    # about three times slower): columns first, then the transposed, already narrowed image.
    columns = along(np.asarray(arr, dtype=np.float32), shape[1])
    rows = along(np.ascontiguousarray(columns.T), shape[0])
    return np.ascontiguousarray(rows.T)


def resize(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float image: area average along shrinking axes, bilinear along enlarging ones."""
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"Target shape must be positive, not {shape}.")
    return _separable(arr, shape, _resize_last)


def bilinear(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float map bilinearly (half-pixel centres), whatever the direction."""
    return _separable(arr, shape, _bilinear_last)


def nearest(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D array (e.g. a boolean mask) by nearest neighbour, keeping its dtype."""
    src_rows = np.minimum(
        ((np.arange(shape[0]) + 0.5) * arr.shape[0] / shape[0]).astype(np.intp), arr.shape[0] - 1
    )
    src_cols = np.minimum(
        ((np.arange(shape[1]) + 0.5) * arr.shape[1] / shape[1]).astype(np.intp), arr.shape[1] - 1
    )
    return arr[np.ix_(src_rows, src_cols)]
