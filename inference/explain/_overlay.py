"""PNG overlays: the radiograph in grey, the heatmap in colour where it is warm, the hottest box outlined."""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from inference.explain._heatmap import Box
from inference.explain._png import encode_png_rows

# Anchor colours (position, RGB) of a blue → green → yellow → red ramp; dark blue is never shown
# because heat below the display threshold stays transparent.
_ANCHORS: Final = (
    (0.0, (30, 60, 200)),
    (0.35, (0, 190, 230)),
    (0.55, (40, 210, 90)),
    (0.75, (255, 215, 0)),
    (1.0, (230, 30, 20)),
)
BOX_COLOUR: Final = (255, 255, 255)
BOX_SHADOW: Final = (0, 0, 0)


def _lut() -> np.ndarray:
    grid = np.linspace(0.0, 1.0, 256)
    positions = [p for p, _ in _ANCHORS]
    channels = [np.interp(grid, positions, [c[i] for _, c in _ANCHORS]) for i in range(3)]
    return np.stack(channels, axis=1).astype(np.float32)


COLOUR_LUT: Final = _lut()
"""256 x 3 float32 RGB colour map used for heat."""


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float32 map to ``(width, height)`` with Pillow (area-like filter when shrinking)."""
    from PIL import Image

    if (image.shape[1], image.shape[0]) == size:
        return image.astype(np.float32, copy=False)
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(size, Image.Resampling.BILINEAR)
    )


def display_size(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``(rows, columns)`` of an image of ``shape`` scaled down to at most ``max_side`` a side (never up)."""
    rows, columns = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(rows, columns))
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def _alpha_lut(threshold: float, max_alpha: float) -> list[int]:
    level = np.linspace(0.0, 1.0, 256)
    # Fade in over [threshold, threshold + 0.2] so the colour has no hard edge at the threshold.
    alpha = max_alpha * np.clip((level - threshold) / 0.2, 0.0, 1.0) * np.maximum(level, 0.4)
    return [int(v) for v in np.round(alpha * 255.0)]


_PALETTE: Final = np.round(COLOUR_LUT).astype(np.uint8).tobytes()


def transparent_below(threshold: float = 0.2, max_alpha: float = 0.55) -> int:
    """The highest heat level an overlay drawn with these settings shows fully transparent (it and every
    level under it leave the radiograph's pixel as it is)."""
    opacity = _alpha_lut(threshold, max_alpha)
    return next((level for level, alpha in enumerate(opacity) if alpha > 0), 256) - 1


OVERLAY_FLOOR: Final = transparent_below()
"""The levels :func:`overlay_png` and :func:`overlay_rgb` (default settings) do not show: up to 51."""


def overlay_png(
    base: np.ndarray,
    heatmap: np.ndarray,
    *,
    box: Box | None = None,
    max_side: int = 1024,
    threshold: float = 0.2,
    max_alpha: float = 0.55,
) -> bytes:
    """Render the heatmap over the radiograph as a PNG with the original aspect ratio.

    The cost follows the output size, not the radiograph's: give ``base`` and ``heatmap`` at (or near)
    the output size when the original is large (:func:`display_size`); the box stays in the heatmap's
    pixel coordinates.

    Args:
        base: display image in [0, 1] (dense structures bright), any resolution with the original
            aspect ratio (e.g. ``inference.preprocess.to_unit`` of the decoded pixels).
        heatmap: ``[rows, columns]`` heat in [0, 1] over the image, or its 8-bit levels (uint8,
            :func:`inference.explain.cam_to_levels`); sets the output geometry.
        box: a box in the heatmap's pixel coordinates to outline (original pixels for a heatmap in
            original geometry).
        max_side: longest side of the PNG; larger images are scaled down for transport.
        threshold: heat below it stays transparent, so the radiograph stays readable.
        max_alpha: opacity of the hottest colour.

    Returns:
        PNG bytes (8-bit RGB).
    """
    plan = _OverlayPlan(base, heatmap, box, max_side, threshold, max_alpha)
    # Made and compressed in two bands of rows at once: Pillow lets go of the interpreter while it blends.
    return encode_png_rows(plan.rows, plan.columns, 3, plan.rgb_rows)


def overlay_rgb(
    base: np.ndarray,
    heatmap: np.ndarray,
    *,
    box: Box | None = None,
    max_side: int = 1024,
    threshold: float = 0.2,
    max_alpha: float = 0.55,
) -> np.ndarray:
    """The pixels of :func:`overlay_png` (uint8 RGB ``[rows, columns, 3]``), without encoding a PNG."""
    plan = _OverlayPlan(base, heatmap, box, max_side, threshold, max_alpha)
    return np.ascontiguousarray(plan.rgb_rows(0, plan.rows))


class _OverlayPlan:
    """What an overlay is drawn from, at the output's size, and the drawing of any band of its rows.

    Every pixel of the overlay depends only on its own grey pixel and heat level, and on the box outline,
    whose rectangles are placed in whole pixels: a band drawn alone has exactly the rows of the whole
    picture drawn at once (tested).
    """

    def __init__(
        self,
        base: np.ndarray,
        heatmap: np.ndarray,
        box: Box | None,
        max_side: int,
        threshold: float,
        max_alpha: float,
    ) -> None:
        heat = _heat_or_levels(heatmap)
        base = np.asarray(base)
        if heat.ndim != 2 or base.ndim != 2:
            raise ValueError("overlay_png takes 2-D base and heatmap arrays [rows, columns].")
        rows, columns = heat.shape
        self.rows, self.columns = display_size((rows, columns), max_side)
        self.size = (self.columns, self.rows)  # Pillow sizes are (width, height)
        if base.dtype == np.uint8 and (base.shape[1], base.shape[0]) == self.size:
            grey_pixels = base  # already an 8-bit display rendering of the output's geometry
        else:
            grey = np.clip(np.nan_to_num(_resize(np.asarray(base, dtype=np.float32), self.size)), 0.0, 1.0)
            grey_pixels = np.round(grey * 255.0).astype(np.uint8)
        self._grey = np.ascontiguousarray(grey_pixels)
        self._level = _level_image(_heat_levels(heat, self.size))
        self._opacity_lut = _alpha_lut(threshold, max_alpha)
        self._box = box
        self._heat_shape = (int(rows), int(columns))

    def rgb_rows(self, start: int, stop: int) -> np.ndarray:
        """uint8 RGB rows ``[start, stop)`` of the overlay (safe to call from several threads at once)."""
        from PIL import Image

        level = self._level.crop((0, start, self.columns, stop))
        opacity = level.point(self._opacity_lut)
        # The blend runs in Pillow (C, GIL released); float maths on millions of RGB values cost 5x more.
        # Where the opacity is 0 the blend gives the grey pixel unchanged, so only the box around the
        # visible heat is coloured and blended (a focal finding: a fraction of the picture); the pixels
        # are those of blending the whole picture.
        image = Image.fromarray(self._grey[start:stop]).convert("RGB")
        warm = opacity.getbbox()
        if warm is not None:
            colour = level.crop(warm)
            colour.putpalette(_PALETTE)
            image.paste(colour.convert("RGB"), warm, opacity.crop(warm))
        if self._box is not None:
            _outline(image, self._box, self.size, self._heat_shape, top=start)
        return np.asarray(image, dtype=np.uint8)


def _heat_or_levels(heatmap: np.ndarray) -> np.ndarray:
    """uint8 heat levels as they are; any other heat as float32."""
    heat = np.asarray(heatmap)
    return heat if heat.dtype == np.uint8 else np.asarray(heat, dtype=np.float32)


def _heat_levels(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``round(clip(heat, 0, 1) * 255)`` of float32 ``heat`` at Pillow ``size`` (NaN as no heat).

    uint8 ``heat`` is such levels already (:func:`inference.explain.cam_to_levels`): kept as they are
    at ``size``, resampled as heat ``levels / 255`` at another size.

    Heat of the output's size (what :class:`inference.analysis.Rendering` draws from) is scaled,
    clipped and rounded in place in one float buffer: ``fmax``/``fmin`` send NaN and -inf to 0 and +inf
    to 255, as cleaning the map first would, with the same float32 products and rounding.
    """
    if heat.dtype == np.uint8:
        if (heat.shape[1], heat.shape[0]) == size:
            return heat
        heat = np.divide(heat, np.float32(255.0), dtype=np.float32)
    if (heat.shape[1], heat.shape[0]) != size:
        # Resampled first, from a clean map (a NaN would spread through the bilinear filter).
        heat = _resize(np.clip(np.nan_to_num(heat), 0.0, 1.0), size)
    scaled: np.ndarray = np.multiply(heat, np.float32(255.0), dtype=np.float32)
    np.fmax(scaled, np.float32(0.0), out=scaled)
    np.fmin(scaled, np.float32(255.0), out=scaled)
    np.rint(scaled, out=scaled)
    levels: np.ndarray = scaled.astype(np.uint8)
    return levels


def _level_image(levels: np.ndarray) -> Any:
    """The ``L`` image of uint8 ``levels`` ``[rows, columns]``.

    Heat sampled column by column comes column-major (as :class:`inference.analysis.Rendering` draws
    it); Pillow transposes that in half the time of the strided copy ``fromarray`` would make.
    """
    from PIL import Image

    if not levels.flags.c_contiguous and levels.T.flags.c_contiguous:
        return Image.fromarray(levels.T).transpose(Image.Transpose.TRANSPOSE)
    return Image.fromarray(np.ascontiguousarray(levels))


def _outline(image: Any, box: Box, size: tuple[int, int], shape: tuple[int, int], *, top: int = 0) -> None:
    """Outline ``box`` (in ``shape`` pixel coordinates) on ``image``: the rows of a picture of Pillow
    ``size`` from row ``top`` on (the whole picture when 0)."""
    from PIL import ImageDraw

    rows, columns = shape
    draw = ImageDraw.Draw(image)
    width = max(1, round(max(size) / 400))
    sx, sy = size[0] / columns, size[1] / rows
    x0, y0 = box.x0 * sx, box.y0 * sy
    x1, y1 = max(x0, box.x1 * sx - 1), max(y0, box.y1 * sy - 1)
    # A dark outline around a white one stays visible on bright bone, dark lung and colour alike.
    shadow = BOX_SHADOW if image.mode == "RGB" else (*BOX_SHADOW, 255)
    colour = BOX_COLOUR if image.mode == "RGB" else (*BOX_COLOUR, 255)
    # Pillow truncates a rectangle's corners to whole pixels (toward zero). Truncated here first, a band's
    # rectangles move by exactly ``top`` rows; truncating after the shift would move some by one more.
    outer = (int(x0 - width), int(y0 - width) - top, int(x1 + width), int(y1 + width) - top)
    draw.rectangle(outer, outline=shadow, width=3 * width)
    draw.rectangle((int(x0), int(y0) - top, int(x1), int(y1) - top), outline=colour, width=width)


def heat_layer_png(
    heatmap: np.ndarray,
    *,
    box: Box | None = None,
    threshold: float = 0.2,
    max_alpha: float = 0.55,
) -> bytes:
    """The heat of :func:`overlay_png` alone, as a transparent RGBA PNG of the heatmap's geometry.

    A viewer lays it over the display rendering (same rows and columns) and can change its opacity; the
    colours and opacities are the overlay's, so layer over image looks like the overlay.

    Args:
        heatmap: ``[rows, columns]`` heat in [0, 1], or its 8-bit levels (uint8,
            :func:`inference.explain.cam_to_levels`); the PNG has this geometry.
        box: a box in the heatmap's pixel coordinates to outline (opaque).
        threshold: heat below it is fully transparent.
        max_alpha: opacity of the hottest colour.

    Returns:
        PNG bytes (8-bit RGBA).
    """
    heat = _heat_or_levels(heatmap)
    if heat.ndim != 2:
        raise ValueError("heat_layer_png takes a 2-D heatmap [rows, columns].")
    rows, columns = heat.shape
    size = (columns, rows)
    levels = _level_image(_heat_levels(heat, size))
    opacity_lut = _alpha_lut(threshold, max_alpha)

    def rgba_rows(start: int, stop: int) -> np.ndarray:
        # Heat level -> colour through a palette, level -> opacity through a point table; drawn in two
        # bands of rows at once, as overlays are (the same pixels as the whole layer drawn at once).
        band = levels.crop((0, start, columns, stop))
        opacity = band.point(opacity_lut)
        band.putpalette(_PALETTE)
        image = band.convert("RGBA")
        image.putalpha(opacity)
        if box is not None:
            _outline(image, box, size, (rows, columns), top=start)
        return np.asarray(image, dtype=np.uint8)

    return encode_png_rows(int(rows), int(columns), 4, rgba_rows)
