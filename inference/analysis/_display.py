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


def _packed_pair_sums(pixels: np.ndarray) -> np.ndarray | None:
    """uint32 sums of the 2 x 2 blocks of 15-bit ``uint16`` pixels, or None when they do not qualify.

    Each aligned pair of neighbouring pixels is read as one ``uint32`` (low half the even column, high
    half the odd one), so one integer addition sums two columns of two rows at once: below 2^15 a half
    holds the sum of two pixels without carrying into the other. The halves are then added: exact
    integer sums, with a quarter of the passes of the float sums.
    """
    if (
        pixels.dtype != np.dtype("<u2")
        or pixels.ndim != 2
        or pixels.shape[0] < 2
        or pixels.shape[1] < 2
        or pixels.shape[1] % 2
        or not pixels.flags.c_contiguous
        or int(pixels.max()) >= 1 << 15
    ):
        return None
    pairs = pixels.view(np.uint32)
    rows = (pixels.shape[0] // 2) * 2
    both = pairs[0:rows:2] + pairs[1:rows:2]
    low = both & np.uint32(0xFFFF)
    both >>= np.uint32(16)
    both += low
    return both


def block_mean(pixels: np.ndarray, f: int) -> np.ndarray:
    """float32 means of ``f`` x ``f`` blocks (up to ``f - 1`` edge rows and columns are left out).

    Rows are summed first, whole rows at a time (contiguous), then the columns of the ``f`` times smaller
    strip: a quarter of the strided reads of summing the ``f * f`` pixels of each block one by one.
    Integer pixels sum exactly in float32 (below 2^24), so the order of the sums changes nothing, and
    2 x 2 blocks of 15-bit pixels (12- and 14-bit radiographs) are summed as integers first
    (:func:`_packed_pair_sums`): the same float32 sums, so the same means.
    """
    if f == 2:
        sums = _packed_pair_sums(pixels)
        if sums is not None:
            mean = sums.astype(np.float32)
            mean *= np.float32(0.25)
            return mean
    return strided_block_mean(pixels, f)


def strided_block_mean(pixels: np.ndarray, f: int) -> np.ndarray:
    """:func:`block_mean` by float32 sums of strided views: any dtype, layout and factor."""
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
    """uint8 display pixels of values in [0, 1] (NaN black; rounded half to even).

    Scaled first, then clipped to [0, 255]: for values in [0, 1] the same products as clipping to [0, 1]
    first, and out of range the same ends (infinities included). NaN is looked for in one cheap pass and
    only then replaced, instead of every pixel going through :func:`numpy.nan_to_num`.
    """
    values = np.multiply(np.asarray(unit, dtype=np.float32), np.float32(255.0))
    if np.isnan(values).any():
        np.nan_to_num(values, copy=False)
    np.clip(values, 0.0, 255.0, out=values)
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
