"""The model input is the same tensor, bit for bit, as the plain arithmetic gives it.

Models are trained on this preprocessing: the VOI window computed in place and the area resize's gathered
edge pixels must not move one float, whatever the image, the window, the sizes and the layout.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.preprocess import Geometry, PreprocessParams, prepare_pixels, resize, to_unit
from inference.preprocess._voi import window


def _reference_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    linear = (values - np.float32(center - 0.5)) / np.float32(width - 1.0) + np.float32(0.5)
    return np.asarray(np.clip(linear, 0.0, 1.0), dtype=np.float32)


def _reference_area_sums(arr: np.ndarray, out_len: int) -> np.ndarray:
    """Area average along the last axis by ``reduceat`` and fancy indexing (the code before ``take``)."""
    n = arr.shape[-1]
    edges = np.linspace(0.0, n, out_len + 1)
    base = np.floor(edges).astype(np.intp)
    sums = np.add.reduceat(arr, base[:-1], axis=-1, dtype=np.float32)
    inner = base[1:-1]
    cut = arr[..., inner] * (edges[1:-1] - inner).astype(np.float32)
    sums[..., :-1] += cut
    sums[..., 1:] -= cut
    sums *= np.float32(out_len / n)
    return sums


def _reference_resize(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`resize` for shrinks of four and more on both axes, from the reference above."""
    columns = _reference_area_sums(np.asarray(arr, dtype=np.float32), shape[1])
    rows = _reference_area_sums(np.ascontiguousarray(columns.T), shape[0])
    return np.ascontiguousarray(rows.T)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(("center", "width"), [(2047.5, 3685.5), (40.0, 400.0), (0.5, 2.0), (-1000.0, 1.5)])
def test_linear_window_gives_the_same_floats(center: float, width: float) -> None:
    rng = np.random.default_rng(int(width))
    values = rng.normal(center, width, size=(257, 193)).astype(np.float32)
    values.flat[:4] = [center - 0.5, center + width / 2, np.inf, -np.inf]
    before = values.copy()
    assert _same(window(values, center, width, "LINEAR"), _reference_linear(values, center, width))
    assert _same(
        window(values[::2, 1::3], center, width, "LINEAR"),
        _reference_linear(values[::2, 1::3], center, width),
    )
    assert _same(values, before)  # the input is left as it was


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((1024, 1024), (160, 160)),
        ((1955, 1841), (160, 151)),
        ((2048, 1700), (160, 133)),
        ((640, 512), (160, 128)),
        ((97, 41), (24, 10)),
        ((5000, 48), (160, 6)),
    ],
)
def test_area_resize_of_fourfold_shrinks_gives_the_same_floats(
    source: tuple[int, int], target: tuple[int, int]
) -> None:
    image = np.random.default_rng(source[0]).random(source, dtype=np.float32)
    assert _same(resize(image, target), _reference_resize(image, target))
    assert _same(resize(image.T, target[::-1]), _reference_resize(image.T, target[::-1]))


@pytest.mark.parametrize("shape", [(2048, 2048), (1955, 1841), (700, 1300)])
def test_the_model_input_is_the_same_tensor(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[1])
    pixels = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    params = PreprocessParams(input_size=160)
    tensor = prepare_pixels(
        pixels, photometric="MONOCHROME1", window_centers=(2047.5,), window_widths=(3685.5,), params=params
    ).tensor
    values = pixels.astype(np.float32)
    unit = np.float32(1.0) - _reference_linear(values, 2047.5, 3685.5)
    geometry = Geometry.letterbox(shape, 160)
    canvas = np.zeros((160, 160), dtype=np.float32)
    height, width = geometry.content_shape
    top, left = geometry.pad_top, geometry.pad_left
    canvas[top : top + height, left : left + width] = _reference_resize(unit, (height, width))
    canvas -= np.float32(params.mean)
    canvas /= np.float32(params.std)
    assert _same(tensor, canvas[None])


@pytest.mark.parametrize(
    "voi",
    [
        {"window_centers": (0.4,), "window_widths": (0.5,)},
        {"window_centers": (0.4,), "window_widths": (0.5,), "voi_lut_function": "LINEAR_EXACT"},
        {"window_centers": (0.4,), "window_widths": (0.5,), "voi_lut_function": "SIGMOID"},
        {"window_centers": (0.4,), "window_widths": (1.0,)},
        {"voi_lut": (0, 8, np.arange(256, dtype=np.uint16))},
        {},
    ],
    ids=["linear", "linear-exact", "sigmoid", "threshold", "lut", "percentiles"],
)
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_float_pixels_are_windowed_into_a_new_array(voi: dict[str, object], photometric: str) -> None:
    """Float32 pixels (block means) are not copied before the window, so no window may write to them."""
    pixels = np.random.default_rng(9).random((64, 48), dtype=np.float32)
    before = pixels.copy()
    unit = to_unit(pixels, photometric=photometric, **voi)  # type: ignore[arg-type]
    assert unit is not pixels and not np.shares_memory(unit, pixels)
    assert _same(pixels, before)
