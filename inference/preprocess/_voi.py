"""Modality LUT and VOI transforms (PS3.3 C.11.1 and C.11.2), output in [0, 1]."""

from __future__ import annotations

import math

import numpy as np

# Percentiles are estimated on at most about this many samples: exact enough, and fast on 9 Mpixel images.
_PERCENTILE_SAMPLES = 1 << 18


def modality_lut(pixels: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Stored values → modality values (float32).

    Without a rescale, float32 pixels (block means already reduced) are returned as they are, not
    copied: the windows below all write their output to new arrays and never to their input.
    """
    if slope == 1.0 and intercept == 0.0:
        return pixels.astype(np.float32, copy=False)
    values = pixels.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Apply a VOI window, output in [0, 1].

    LINEAR follows PS3.3 C.11.2.1.2.1 (the ``c - 0.5`` / ``w - 1`` form), LINEAR_EXACT C.11.2.1.3.2,
    SIGMOID C.11.2.1.3.1.
    """
    if function == "SIGMOID":
        exponent = np.clip(np.float32(-4.0 / width) * (values - np.float32(center)), -80.0, 80.0)
        return np.asarray(1.0 / (1.0 + np.exp(exponent)), dtype=np.float32)
    if function == "LINEAR_EXACT":
        exact = (values - np.float32(center)) / np.float32(width) + np.float32(0.5)
        return np.asarray(np.clip(exact, 0.0, 1.0), dtype=np.float32)
    if width <= 1.0:
        # w = 1 makes LINEAR a threshold at c - 0.5 (values above it are at the top of the range).
        return (values > center - 0.5).astype(np.float32)
    # One new array, then in place: the same float32 operations, without a temporary for each.
    linear: np.ndarray = np.subtract(values, np.float32(center - 0.5), dtype=np.float32)
    linear /= np.float32(width - 1.0)
    linear += np.float32(0.5)
    np.clip(linear, 0.0, 1.0, out=linear)
    return linear


def lut(values: np.ndarray, first_mapped: int, bits: int, table: np.ndarray) -> np.ndarray:
    """Apply a VOI LUT table (PS3.3 C.11.2.1.1), output in [0, 1]."""
    index = np.clip(np.rint(values) - first_mapped, 0, table.size - 1).astype(np.intp)
    scaled = table.astype(np.float32)[index] / np.float32(2**bits - 1)
    return np.asarray(np.clip(scaled, 0.0, 1.0), dtype=np.float32)


def percentile_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Window between two percentiles of the values, output in [0, 1]; a flat image maps to 0."""
    step = max(1, math.isqrt(max(1, values.size // _PERCENTILE_SAMPLES)))
    sample = values[::step, ::step] if values.ndim == 2 else values[::step]
    lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        return np.zeros_like(values, dtype=np.float32)
    scaled = (values - np.float32(lo)) / np.float32(hi - lo)
    return np.asarray(np.clip(scaled, 0.0, 1.0), dtype=np.float32)
