"""Physical plausibility of what a radiograph's header and pixels say, checked before anything is computed.

Numbers enter from the sender: the modality LUT (Rescale Slope and Intercept), the VOI window (Window
Center and Width) and the pixels themselves. Decimal strings such as ``1e308`` or ``NaN`` are valid DICOM
syntax (or close enough for lenient readers) but make the float32 pipeline produce ``inf`` or ``NaN``, and
a blank or one-pixel image is not a radiograph at all: the model would still answer, confidently, about
nothing. Each check refuses with its own code so the sender learns exactly what to fix:

- ``invalid_rescale`` / ``invalid_window`` (400): a value that is not a finite number, or a zero slope;
- ``implausible_rescale`` (422): the modality LUT would lose the difference between adjacent stored
  values in float32, or its slope is outside [1e-6, 1e6];
- ``implausible_window`` (422): the window lies wholly outside the image's values (every pixel would
  show the same grey) or is more than 1024 times wider than their range;
- ``image_too_small`` (422): fewer rows or columns than ``Limits.min_side`` (the server: :data:`MIN_SIDE`);
- ``blank_image`` (422): every pixel, or all but a sliver of them, has the same value;
- ``implausible_voi_lut`` (422): the VOI LUT (used when there is no window) maps the whole image to
  one grey.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ._errors import reject

if TYPE_CHECKING:
    from pydicom import Dataset

    from ._decode import PixelLayout

MIN_SIDE: Final = 32
"""Fewest rows or columns of an analysable image: below this no chest anatomy can be resolved."""

MIN_CONTENT_FRACTION: Final = 0.01
"""Share of pixels that must differ from the image's most common value (its background)."""

SLOPE_RANGE: Final = (1e-6, 1e6)
"""Accepted magnitude of Rescale Slope: beyond it the modality values mean nothing physical."""

_FLOAT32_HEADROOM: Final = 2**22
"""float32 has 24 significant bits; modality values up to 2^22 slopes keep adjacent steps 2+ ULP apart."""

MAX_WINDOW_RATIO: Final = 1024
"""A window wider than this many times the image's value range leaves it a flat grey."""

_SAMPLE: Final = 1 << 18


def _numbers(ds: Dataset, keyword: str, code: str) -> tuple[float, ...]:
    """Every value of a DS/IS attribute as a finite float; empty when absent. Refuses anything else."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    items: list[Any] = (
        list(value) if hasattr(value, "__len__") and not isinstance(value, str | bytes) else [value]
    )
    out: list[float] = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError, OverflowError) as e:
            raise reject(code, f"{keyword} is not a decimal number; send a finite decimal value.") from e
        if not math.isfinite(number):
            raise reject(code, f"{keyword} is not a finite number (NaN or infinite); send a finite value.")
        out.append(number)
    return tuple(out)


def _stored_range(layout: PixelLayout) -> tuple[int, int]:
    if layout.pixel_representation == 1:
        return -(1 << (layout.bits_stored - 1)), (1 << (layout.bits_stored - 1)) - 1
    return 0, (1 << layout.bits_stored) - 1


def rescale(ds: Dataset, layout: PixelLayout) -> tuple[float, float]:
    """The modality LUT ``(slope, intercept)`` (identity when absent), checked for finite, usable values.

    Raises:
        DicomRejected: ``invalid_rescale`` (400) or ``implausible_rescale`` (422).
    """
    slopes = _numbers(ds, "RescaleSlope", "invalid_rescale")
    intercepts = _numbers(ds, "RescaleIntercept", "invalid_rescale")
    slope = slopes[0] if slopes else 1.0
    intercept = intercepts[0] if intercepts else 0.0
    if slope == 0:
        raise reject("invalid_rescale", "Rescale Slope is 0; a non-zero slope is required.")
    low, high = SLOPE_RANGE
    if not low <= abs(slope) <= high:
        raise reject(
            "implausible_rescale",
            f"Rescale Slope has magnitude {abs(slope):.3g}; accepted magnitudes are {low:g} to {high:g}.",
        )
    first, last = _stored_range(layout)
    largest = abs(intercept) + abs(slope) * max(abs(first), abs(last))
    if largest >= abs(slope) * _FLOAT32_HEADROOM:
        raise reject(
            "implausible_rescale",
            f"Rescale Intercept ({intercept:.3g}) is so large against Rescale Slope ({slope:.3g}) that "
            "neighbouring pixel values could not be told apart; send the modality LUT of the image.",
        )
    return slope, intercept


def windows(ds: Dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Window centres and widths as sent, each a finite number (pairs are matched by the caller).

    Raises:
        DicomRejected: ``invalid_window`` (400) for a value that is not a finite number.
    """
    return _numbers(ds, "WindowCenter", "invalid_window"), _numbers(ds, "WindowWidth", "invalid_window")


def check_pixels(
    pixels: np.ndarray,
    *,
    rows: int,
    columns: int,
    min_side: int,
    slope: float,
    intercept: float,
    window: tuple[float, float] | None,
    voi_lut: tuple[int, int, np.ndarray] | None = None,
) -> None:
    """Refuse an image that is too small, blank, or that its own window would show as one flat grey.

    Args:
        pixels: Decoded stored values (possibly at reduced resolution).
        rows: Rows of the original image (the header's).
        columns: Columns of the original image.
        min_side: Fewest rows and columns accepted.
        slope: Modality LUT slope (already checked).
        intercept: Modality LUT intercept.
        window: ``(center, width)`` of the VOI window the model input will use, None when there is none.
        voi_lut: ``(first_mapped, bits, table)``, used by the model input when there is no window.

    Raises:
        DicomRejected: ``image_too_small``, ``blank_image``, ``implausible_window`` or
            ``implausible_voi_lut`` (all 422).
    """
    if rows < min_side or columns < min_side:
        raise reject(
            "image_too_small",
            f"The image has {rows} x {columns} pixels; a radiograph needs at least {min_side} rows and "
            f"{min_side} columns.",
        )
    lowest, highest = int(pixels.min()), int(pixels.max())
    if lowest == highest:
        raise reject(
            "blank_image", "Every pixel of the image has the same value: it is blank, not a radiograph."
        )
    step = max(1, math.isqrt(max(1, pixels.size // _SAMPLE)))
    sample = pixels[::step, ::step].ravel().astype(np.int64) - lowest
    common = int(np.bincount(sample).max())
    if sample.size - common < MIN_CONTENT_FRACTION * sample.size:
        raise reject(
            "blank_image",
            f"More than {100 * (1 - MIN_CONTENT_FRACTION):g} % of the pixels have one same value: the image "
            "is nearly empty, not a radiograph.",
        )
    ends = sorted((lowest * slope + intercept, highest * slope + intercept))
    if window is None:
        if voi_lut is not None:
            _check_lut(voi_lut, ends)
        return
    center, width = window
    # LINEAR maps [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] onto the grey scale (PS3.3 C.11.2.1.2); the
    # other functions are centred on c with the same width, to within half a value.
    bottom, top = center - 0.5 - width / 2, center - 0.5 + width / 2
    if top < ends[0] or bottom > ends[1]:
        raise reject(
            "implausible_window",
            "Window Center and Window Width lie wholly outside the values of the image, which would show "
            "as one flat grey; send the window the image is meant to be read with, or none.",
        )
    if width > MAX_WINDOW_RATIO * max(ends[1] - ends[0], abs(slope)):
        raise reject(
            "implausible_window",
            f"Window Width is more than {MAX_WINDOW_RATIO} times the range of the image's values, which "
            "would show as one flat grey; send the window the image is meant to be read with, or none.",
        )


def _check_lut(voi_lut: tuple[int, int, np.ndarray], ends: list[float]) -> None:
    """Refuse a VOI LUT that gives every value of the image the same grey (it flattens the image)."""
    first, _bits, table = voi_lut
    low = int(np.clip(math.floor(ends[0]) - first, 0, table.size - 1))
    high = int(np.clip(math.ceil(ends[1]) - first, 0, table.size - 1))
    used = table[low : high + 1]
    if used.size == 0 or float(used.min()) == float(used.max()):
        raise reject(
            "implausible_voi_lut",
            "The VOI LUT maps every value of the image to the same grey; send the LUT the image is meant "
            "to be read with, or none.",
        )
