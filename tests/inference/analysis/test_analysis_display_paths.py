"""The block means and the 8-bit display rendering are exactly what the plain float arithmetic gives.

The server reduces a 2048² film by 2 x 2 block means (summed as packed integers for 15-bit pixels) and
renders the display from the windowed values: the model input and the picture every viewer, overlay and
Secondary Capture shows must be the same, bit for bit, as before those shortcuts, whatever the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._files import chest_pixels
from inference.analysis._display import block_mean, strided_block_mean, to_display


def _reference_display(unit: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(unit, dtype=np.float32), copy=True)
    np.clip(values, 0.0, 1.0, out=values)
    values *= np.float32(255.0)
    np.rint(values, out=values)
    return values.astype(np.uint8)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shape", [(2048, 2048), (7, 9), (9, 8), (2, 2), (3, 2), (1001, 640), (64, 3)])
@pytest.mark.parametrize("top", [1, 255, 4095, 16383, (1 << 15) - 1, 1 << 15, 65535])
def test_block_means_of_uint16_pixels_are_the_float_sums(shape: tuple[int, int], top: int) -> None:
    rng = np.random.default_rng(top + shape[0] * 7919 + shape[1])
    pixels = rng.integers(0, top + 1, size=shape, dtype=np.uint16)
    pixels.flat[int(rng.integers(pixels.size))] = top  # the top value is always there
    for f in (2, 3, 4):
        if shape[0] >= f and shape[1] >= f:
            assert _same(block_mean(pixels, f), strided_block_mean(pixels, f)), f


def test_the_benchmark_film_reduces_to_the_same_means() -> None:
    pixels = chest_pixels(2048)
    assert _same(block_mean(pixels, 2), strided_block_mean(pixels, 2))


@pytest.mark.parametrize(
    "pixels",
    [
        np.arange(48 * 50, dtype=np.uint16).reshape(48, 50)[:, 1:49],  # a strided view of whole rows
        np.arange(48 * 50, dtype=np.uint16).reshape(50, 48)[::-1],  # rows upside down
        np.arange(48 * 50, dtype=np.uint16).reshape(48, 50).T,  # Fortran order
        np.arange(48 * 50, dtype=">u2").reshape(48, 50),  # big-endian
        np.arange(48 * 50, dtype=np.int16).reshape(48, 50) - 1000,  # signed
        np.arange(48 * 50, dtype=np.uint8).reshape(48, 50),
        np.linspace(-3.0, 7.5, 48 * 50, dtype=np.float32).reshape(48, 50),
    ],
    ids=["strided", "flipped", "fortran", "big-endian", "int16", "uint8", "float32"],
)
def test_other_layouts_and_types_keep_their_means(pixels: np.ndarray) -> None:
    for f in (2, 3):
        assert _same(block_mean(pixels, f), strided_block_mean(pixels, f)), f


def test_display_pixels_round_and_clip_as_before() -> None:
    tiny = np.finfo(np.float32).tiny
    edges = np.array(
        [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1e-30, 1 + 1e-7, 0.5, tiny, -tiny, 7.0, -3.0]
        + [(k + 0.5) / 255 for k in range(255)],  # ties at every level
        dtype=np.float32,
    )
    rng = np.random.default_rng(3)
    spread = rng.normal(0.5, 0.7, size=(300, 301)).astype(np.float32)
    spread[rng.random(spread.shape) < 0.01] = np.nan
    for unit in (edges, spread, spread.astype(np.float64), spread[::3, ::2], np.zeros((0, 4), np.float32)):
        assert _same(to_display(unit), _reference_display(unit))
