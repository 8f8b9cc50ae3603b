"""The display rendering: the radiograph windowed for viewing, at most :data:`DISPLAY_SIDE` a side, 8-bit.

One rendering per result, made while the decoded pixels are in memory: the radiologist's viewer shows
it, heatmap overlays are drawn on it, and the DICOM Secondary Captures for the PACS are built from it,
so all of them window the image the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from inference.dicom import Instance
    from inference.preprocess import PreprocessParams

DISPLAY_SIDE: Final = 1024
"""Longest side of the display rendering; heatmaps and boxes are measured on its pixel grid."""


def display_shape(original_shape: tuple[int, int], max_side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """``(rows, columns)`` of the display rendering of an image of ``original_shape`` (never enlarged)."""
    from inference.explain import display_size

    return display_size(original_shape, max_side)


def shared_reduction(pixels_shape: tuple[int, int], display: tuple[int, int], input_size: int) -> int:
    """The integer block size by which the model input and the display rendering may both be made.

    The largest ``f`` (at most 8) such that the image reduced by ``f`` x ``f`` block means still has at
    least four times the model's side on its short side (the rule of the JPEG 2000 reduced decode in
    ``inference.dicom``) and at least the display rendering's size on both axes; 1 when none is.
    """
    rows, columns = int(pixels_shape[0]), int(pixels_shape[1])
    best = 1
    for f in range(2, 9):
        reduced = (rows // f, columns // f)
        if min(reduced) < 4 * input_size or reduced[0] < display[0] or reduced[1] < display[1]:
            break
        best = f
    return best


def block_mean(pixels: np.ndarray, f: int) -> np.ndarray:
    """float32 means of ``f`` x ``f`` blocks (up to ``f - 1`` edge rows and columns are left out).

    Rows are summed first, whole rows at a time (contiguous), then the columns of the ``f`` times smaller
    strip: a quarter of the strided reads of summing the ``f * f`` pixels of each block one by one.
    Integer pixels sum exactly in float32 (below 2^24), so the order of the sums changes nothing.
    """
    rows, columns = (pixels.shape[0] // f) * f, (pixels.shape[1] // f) * f
    strip = pixels[0:rows:f, :columns].astype(np.float32)
    for dy in range(1, f):
        strip += pixels[dy:rows:f, :columns]
    total = strip[:, 0:columns:f].copy()
    for dx in range(1, f):
        total += strip[:, dx:columns:f]
    total *= np.float32(1.0 / (f * f))
    return total


def to_display(unit: np.ndarray) -> np.ndarray:
    """uint8 display pixels of values in [0, 1] (NaN black; rounded half to even)."""
    values = np.nan_to_num(np.asarray(unit, dtype=np.float32), copy=True)
    np.clip(values, 0.0, 1.0, out=values)
    values *= np.float32(255.0)
    np.rint(values, out=values)
    return values.astype(np.uint8)


def _resample(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Stored values resampled to ``shape``: area average down, bilinear up.

    Done before the display window so windowing runs on the rendering's pixels, not on the radiograph's
    (a 2048² image has four times as many as a 1024² rendering). An integer part of the reduction is
    done by summing strided views; the remainder, if any, by Pillow on the already reduced image.
    """
    from PIL import Image

    if pixels.shape == shape:
        return pixels
    factor = min(pixels.shape[0] // shape[0], pixels.shape[1] // shape[1])
    image = pixels
    if factor >= 2:
        # Up to factor - 1 edge rows or columns are left out: under one display pixel.
        image = block_mean(pixels, factor)
        if image.shape == shape:
            return image
    shrinking = shape[0] <= image.shape[0] and shape[1] <= image.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (shape[1], shape[0]), method
    )
    return np.asarray(resized)


def render_display(instance: Instance, params: PreprocessParams, max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The 8-bit display rendering of a decoded radiograph (dense structures bright).

    The image is windowed as its file asks (VOI window or LUT; else the model's percentile window, so
    the viewer and the model see the same contrast), MONOCHROME1 inverted.

    Returns:
        uint8 ``[rows, columns]`` of :func:`display_shape` of the original geometry.
    """
    from inference.preprocess import to_unit

    shape = display_shape((instance.rows, instance.columns), max_side)
    unit = to_unit(
        _resample(instance.pixels, shape),
        photometric=instance.photometric,
        rescale_slope=instance.rescale_slope,
        rescale_intercept=instance.rescale_intercept,
        window_centers=instance.window_centers,
        window_widths=instance.window_widths,
        voi_lut_function=instance.voi_lut_function,
        voi_lut=instance.voi_lut,
        window_percentiles=params.window_percentiles,
    )
    return to_display(unit)
