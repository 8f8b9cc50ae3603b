"""Modality LUT, VOI windows and LUTs, photometric inversion, normalisation: against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.preprocess import PreprocessParams, prepare_pixels, to_unit

PARAMS = PreprocessParams(input_size=8, mean=0.5, std=0.25)


def _unit(values: list[float], **kwargs: object) -> np.ndarray:
    return to_unit(np.array([values], dtype=np.float32), **kwargs)[0]  # type: ignore[arg-type]


def test_linear_window_follows_ps33_formula() -> None:
    # c = 100, w = 50: bottom at c - 0.5 - (w - 1) / 2 = 75, top above c - 0.5 + (w - 1) / 2 = 124.
    out = _unit(
        [70, 75, 99.5, 100, 124, 130], photometric="MONOCHROME2", window_centers=[100], window_widths=[50]
    )
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.5 + 0.5 / 49, 1, 1], atol=1e-6)


def test_linear_exact_window() -> None:
    out = _unit(
        [70, 75, 100, 110, 125, 130],
        photometric="MONOCHROME2",
        window_centers=[100],
        window_widths=[50],
        voi_lut_function="LINEAR_EXACT",
    )
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.7, 1, 1], atol=1e-6)


def test_sigmoid_window() -> None:
    out = _unit(
        [100, 125, 75],
        photometric="MONOCHROME2",
        window_centers=[100],
        window_widths=[50],
        voi_lut_function="SIGMOID",
    )
    np.testing.assert_allclose(out, [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))], atol=1e-6)


def test_only_the_first_window_is_used() -> None:
    out = _unit([100], photometric="MONOCHROME2", window_centers=[100, 0], window_widths=[50, 10])
    assert out[0] == pytest.approx(0.5 + 0.5 / 49)


def test_modality_lut_applies_before_the_window() -> None:
    # stored 600 * 2 - 1000 = 200 = window centre (+0.5 offset of LINEAR): just above the middle.
    out = _unit(
        [600, 400, 800],
        photometric="MONOCHROME2",
        rescale_slope=2.0,
        rescale_intercept=-1000.0,
        window_centers=[200],
        window_widths=[201],
    )
    np.testing.assert_allclose(out, [0.5 + 0.5 / 200, 0, 1], atol=1e-6)


def test_voi_lut_table_is_used_when_there_is_no_window() -> None:
    table = np.array([0, 1023, 2047, 4095], dtype=np.float32)
    out = _unit([9, 10, 11, 12, 13, 99], photometric="MONOCHROME2", voi_lut=(10, 12, table))
    np.testing.assert_allclose(out, [0, 0, 1023 / 4095, 2047 / 4095, 1, 1], atol=1e-6)


def test_percentile_window_when_nothing_else() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 100)
    out = to_unit(values, photometric="MONOCHROME2", window_percentiles=(10.0, 90.0))
    lo, hi = np.percentile(values, [10, 90])
    assert out.min() == 0 and out.max() == 1
    assert out[5, 0] == pytest.approx((500 - lo) / (hi - lo), abs=1e-5)


def test_flat_image_does_not_divide_by_zero() -> None:
    out = to_unit(np.full((4, 4), 7, dtype=np.uint16), photometric="MONOCHROME2")
    assert np.all(out == 0)


def test_monochrome1_is_inverted_so_dense_is_bright() -> None:
    values = np.linspace(0, 4095, 64, dtype=np.float32).reshape(8, 8)
    kwargs = {"window_centers": [2048], "window_widths": [4096], "params": PARAMS}
    m2 = prepare_pixels(values, photometric="MONOCHROME2", **kwargs).tensor  # type: ignore[arg-type]
    m1 = prepare_pixels(values, photometric="MONOCHROME1", **kwargs).tensor  # type: ignore[arg-type]
    # Back to [0, 1]: x = t * std + mean. MONOCHROME1 low stored values are the bright ones.
    np.testing.assert_allclose(m1 * 0.25 + 0.5, 1 - (m2 * 0.25 + 0.5), atol=1e-6)
    assert m1[0, 0, 0] > m1[0, 7, 7]


def test_tensor_is_normalised_float32_with_one_channel() -> None:
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    prepared = prepare_pixels(
        values, photometric="MONOCHROME2", window_centers=[0.5], window_widths=[2], params=PARAMS
    )
    assert prepared.tensor.shape == (1, 8, 8) and prepared.tensor.dtype == np.float32
    expected = (
        to_unit(values, photometric="MONOCHROME2", window_centers=[0.5], window_widths=[2]) - 0.5
    ) / 0.25
    np.testing.assert_allclose(prepared.tensor[0], expected, atol=1e-6)


def test_params_round_trip_through_metadata() -> None:
    params = PreprocessParams(input_size=320, mean=0.4, std=0.3, window_percentiles=(1.0, 99.0))
    assert PreprocessParams.from_metadata(params.to_metadata()) == params
    assert params.to_metadata()["window_percentiles"] == [1.0, 99.0]
    with pytest.raises(ValueError, match="window_percentiles"):
        PreprocessParams(window_percentiles=(60.0, 40.0))
