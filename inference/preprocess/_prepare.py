"""Decoded instance → model tensor: modality LUT, VOI, [0, 1], MONOCHROME1 inversion, letterbox, normalise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _resize, _voi
from ._geometry import Geometry
from ._params import PreprocessParams

if TYPE_CHECKING:
    from inference.dicom import Instance


@dataclass(frozen=True, eq=False)
class Prepared:
    """The model input for one image and how it relates to the original.

    Attributes:
        tensor: float32 ``[1, S, S]``.
        geometry: Letterbox geometry in ORIGINAL coordinates.
    """

    tensor: np.ndarray
    geometry: Geometry


def prepare(instance: Instance, params: PreprocessParams) -> Prepared:
    """Prepare a decoded instance for the model (the same path in training and in service)."""
    return prepare_pixels(
        instance.pixels,
        photometric=instance.photometric,
        rescale_slope=instance.rescale_slope,
        rescale_intercept=instance.rescale_intercept,
        window_centers=instance.window_centers,
        window_widths=instance.window_widths,
        voi_lut_function=instance.voi_lut_function,
        voi_lut=instance.voi_lut,
        original_shape=(instance.rows, instance.columns),
        params=params,
    )


def to_unit(
    pixels: np.ndarray,
    *,
    photometric: str,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    window_centers: Sequence[float] = (),
    window_widths: Sequence[float] = (),
    voi_lut_function: str = "LINEAR",
    voi_lut: tuple[int, int, np.ndarray] | None = None,
    window_percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Stored values → display values in [0, 1] with dense (bone) bright, before any resizing."""
    values = _voi.modality_lut(np.asarray(pixels), rescale_slope, rescale_intercept)
    if window_centers and window_widths and window_widths[0] > 0:
        unit = _voi.window(
            values, float(window_centers[0]), float(window_widths[0]), voi_lut_function.upper()
        )
    elif voi_lut is not None:
        unit = _voi.lut(values, *voi_lut)
    else:
        unit = _voi.percentile_window(values, *window_percentiles)
    if photometric.upper() == "MONOCHROME1":
        # MONOCHROME1 shows low values bright: invert so dense structures are bright for the model.
        unit = np.float32(1.0) - unit
    return unit.astype(np.float32, copy=False)


def prepare_pixels(
    pixels: np.ndarray,
    *,
    photometric: str,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    window_centers: Sequence[float] = (),
    window_widths: Sequence[float] = (),
    voi_lut_function: str = "LINEAR",
    voi_lut: tuple[int, int, np.ndarray] | None = None,
    original_shape: tuple[int, int] | None = None,
    params: PreprocessParams,
) -> Prepared:
    """Prepare stored pixel values for the model.

    Args:
        pixels: 2-D stored values, possibly decoded at reduced resolution.
        photometric: ``MONOCHROME1`` or ``MONOCHROME2``.
        rescale_slope: Modality LUT slope.
        rescale_intercept: Modality LUT intercept.
        window_centers: VOI window centres; the first one is used.
        window_widths: VOI window widths, matching ``window_centers``.
        voi_lut_function: ``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``.
        voi_lut: ``(first_mapped, bits, table)`` used when there is no window.
        original_shape: ``(rows, columns)`` of the original image when ``pixels`` is reduced; defaults
            to ``pixels.shape``.
        params: Model input parameters.

    Returns:
        The float32 ``[1, S, S]`` tensor and its geometry.
    """
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"Expected a non-empty 2-D image, got shape {arr.shape}.")
    unit = to_unit(
        arr,
        photometric=photometric,
        rescale_slope=rescale_slope,
        rescale_intercept=rescale_intercept,
        window_centers=window_centers,
        window_widths=window_widths,
        voi_lut_function=voi_lut_function,
        voi_lut=voi_lut,
        window_percentiles=params.window_percentiles,
    )
    return prepare_unit(unit, original_shape=original_shape, params=params)


def prepare_unit(
    unit: np.ndarray, *, original_shape: tuple[int, int] | None = None, params: PreprocessParams
) -> Prepared:
    """Letterbox and normalise display values in [0, 1] (the output of :func:`to_unit`).

    Args:
        unit: 2-D values in [0, 1], dense structures bright, possibly at reduced resolution.
        original_shape: ``(rows, columns)`` of the original image; defaults to ``unit.shape``.
        params: Model input parameters.
    """
    arr = unit
    geometry = Geometry.letterbox(original_shape or (arr.shape[0], arr.shape[1]), params.input_size)
    size = params.input_size
    canvas = np.zeros((size, size), dtype=np.float32)  # zero = black padding, before normalisation
    top, left = geometry.pad_top, geometry.pad_left
    height, width = geometry.content_shape
    canvas[top : top + height, left : left + width] = _resize.resize(arr, geometry.content_shape)
    canvas -= np.float32(params.mean)
    canvas /= np.float32(params.std)
    return Prepared(tensor=canvas[None], geometry=geometry)
