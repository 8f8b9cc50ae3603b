"""PNG overlays decode, keep the original aspect ratio, stay grey where there is no heat."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference.explain import COLOUR_LUT, Box, overlay_png, overlay_rgb


def _decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def test_png_keeps_the_aspect_ratio_and_is_scaled_down_for_transport() -> None:
    base = np.tile(np.linspace(0, 1, 1500, dtype=np.float32), (2000, 1))
    heat = np.zeros((2000, 1500), np.float32)
    heat[400:800, 300:700] = 1.0
    pixels = _decode(overlay_png(base, heat, max_side=512))
    assert pixels.shape == (512, 384, 3)


def test_small_images_keep_their_size() -> None:
    pixels = _decode(overlay_png(np.zeros((90, 120), np.float32), np.zeros((90, 120), np.float32)))
    assert pixels.shape == (90, 120, 3)


def test_colour_only_where_the_heat_is_and_the_box_is_outlined() -> None:
    base = np.full((200, 300), 0.3, np.float32)
    heat = np.zeros((200, 300), np.float32)
    heat[50:100, 200:260] = 1.0
    pixels = _decode(overlay_png(base, heat, box=Box(x0=190, y0=40, x1=270, y1=110))).astype(int)
    cold, hot = pixels[150, 50], pixels[75, 230]
    assert cold[0] == cold[1] == cold[2] == round(0.3 * 255)  # grey where there is no heat
    assert hot[0] - hot[2] > 60  # red-dominant at the hottest place
    edge = pixels[40, 190:270]
    assert (edge.max(axis=1) > 200).any() or (edge.max(axis=1) < 20).any()  # white or black outline
    assert (pixels[120:200, 0:150] == pixels[150, 50]).all()  # the rest of the radiograph untouched


def test_base_at_reduced_resolution_is_stretched_to_the_heatmap_geometry() -> None:
    base = np.full((50, 75), 1.0, np.float32)  # decoded at a quarter of the original resolution
    heat = np.zeros((200, 300), np.float32)
    pixels = _decode(overlay_png(base, heat))
    assert pixels.shape == (200, 300, 3) and (pixels == 255).all()


def _reference(grey: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The overlay as documented, in float: grey blended with the colour map by the heat's opacity."""
    level = np.round(np.clip(np.nan_to_num(heat), 0.0, 1.0) * 255.0).astype(int)
    unit = np.linspace(0.0, 1.0, 256)[level]
    # Opacity 0.55 at most, fading in over [0.2, 0.4] of the heat (the defaults), in 8-bit steps.
    alpha = np.round(0.55 * np.clip((unit - 0.2) / 0.2, 0.0, 1.0) * np.maximum(unit, 0.4) * 255) / 255
    colour = np.round(COLOUR_LUT[level])
    return grey[..., None] * (1.0 - alpha[..., None]) + colour * alpha[..., None]


def test_the_overlay_is_the_radiograph_blended_with_the_colour_map_and_the_box_sits_in_place() -> None:
    rng = np.random.default_rng(11)
    rows = np.linspace(0.0, 1.0, 1024)
    grey = np.clip(np.add.outer(rows, rows) * 100 + rng.normal(0, 6, (1024, 1024)) + 20, 0, 255)
    grey = grey.astype(np.uint8)
    yy, xx = np.mgrid[0:1024, 0:1024]
    # A focal finding, sampled column by column like the server's heat (a column-major array).
    heat = np.asfortranarray(np.exp(-((yy - 400) ** 2 + (xx - 620) ** 2) / (2 * 90.0**2)), dtype=np.float32)
    box = Box(x0=540, y0=330, x1=700, y1=470)
    pixels = _decode(overlay_png(grey, heat, box=box))
    assert np.array_equal(pixels, overlay_rgb(grey, heat, box=box))

    width = 3  # round(1024 / 400): the outline's width on a 1024-px picture
    # White outline on the box's edge, a dark one either side of it.
    white = np.zeros((1024, 1024), bool)
    white[box.y0 : box.y1, box.x0 : box.x1] = True
    white[box.y0 + width : box.y1 - width, box.x0 + width : box.x1 - width] = False
    dark = np.zeros((1024, 1024), bool)
    dark[box.y0 - width : box.y1 + width, box.x0 - width : box.x1 + width] = True
    dark[box.y0 + 2 * width : box.y1 - 2 * width, box.x0 + 2 * width : box.x1 - 2 * width] = False
    dark &= ~white
    assert (pixels[white] == 255).all() and (pixels[dark] == 0).all()
    # Everywhere else: the blend, within one level of rounding; the grey untouched where heat is cold.
    rest = ~(white | dark)
    difference = np.abs(pixels - np.round(_reference(grey.astype(np.float64), heat)))
    assert difference[rest].max() <= 1
    cold = heat < 0.2
    assert (pixels[cold] == grey[cold][:, None]).all()
    assert cold.mean() > 0.5 and (pixels[~cold & rest].std(axis=-1) > 0).mean() > 0.9  # colour where warm


def test_heat_that_is_not_a_number_shows_no_colour_and_beyond_one_shows_the_hottest() -> None:
    grey = np.full((40, 60), 100, np.uint8)
    heat = np.zeros((40, 60), np.float32)
    heat[:, :20] = np.nan
    heat[:, 20:40] = np.inf
    heat[:, 40:] = 1.0
    pixels = _decode(overlay_png(grey, heat))
    assert (pixels[:, :20] == 100).all()
    assert (pixels[:, 20:40] == pixels[:, 40:]).all() and (pixels[:, 40:] != 100).any()


def _float_outline(image: Image.Image, box: Box, heat_shape: tuple[int, int]) -> np.ndarray:
    # The outline as it was drawn before pictures were drawn in bands: float corners, Pillow rounding them.
    from PIL import ImageDraw

    rows, columns = heat_shape
    width = max(1, round(max(image.size) / 400))
    sx, sy = image.size[0] / columns, image.size[1] / rows
    x0, y0 = box.x0 * sx, box.y0 * sy
    x1, y1 = max(x0, box.x1 * sx - 1), max(y0, box.y1 * sy - 1)
    opaque = (255,) if image.mode == "RGBA" else ()
    draw = ImageDraw.Draw(image)
    draw.rectangle(
        (x0 - width, y0 - width, x1 + width, y1 + width), outline=(0, 0, 0, *opaque), width=3 * width
    )
    draw.rectangle((x0, y0, x1, y1), outline=(255, 255, 255, *opaque), width=width)
    return np.asarray(image)


def test_an_overlay_drawn_in_two_bands_has_the_pixels_of_one_drawn_whole() -> None:
    # overlay_png makes and compresses the top and bottom halves of its rows on two threads at once. Every
    # split of the rows, across the heat and across the box's outline, must give the same pixels, and the
    # outline those of its float corners drawn on the whole picture (what Pillow drew before).
    from inference.explain._overlay import _OverlayPlan

    rng = np.random.default_rng(11)
    for rows, columns, side in ((900, 700, 450), (1200, 1000, 1024), (311, 517, 1024)):
        base = rng.random((rows, columns)).astype(np.float32)
        heat = np.zeros((rows, columns), np.float32)
        heat[rows // 5 : rows * 3 // 5, columns // 4 : columns * 3 // 4] = rng.random() * 0.5 + 0.5
        heat += rng.random((rows, columns)).astype(np.float32) * 0.3
        box = Box(x0=columns // 4 + 1, y0=rows // 5 + 3, x1=columns * 3 // 4 - 2, y1=rows * 3 // 5 - 1)
        plan = _OverlayPlan(base, heat, box, side, 0.2, 0.55)
        whole = plan.rgb_rows(0, plan.rows)
        unboxed = _OverlayPlan(base, heat, None, side, 0.2, 0.55).rgb_rows(0, plan.rows)
        assert np.array_equal(whole, _float_outline(Image.fromarray(unboxed), box, (rows, columns)))
        outline_rows = np.flatnonzero((whole != unboxed).any(axis=(1, 2)))
        splits = {1, plan.rows // 2, plan.rows - 1, *outline_rows[:4].tolist(), *outline_rows[-4:].tolist()}
        for split in sorted(s for s in splits if 0 < s < plan.rows):
            banded = np.concatenate([plan.rgb_rows(0, split), plan.rgb_rows(split, plan.rows)])
            assert np.array_equal(banded, whole), (rows, columns, side, split)
        with Image.open(io.BytesIO(overlay_png(base, heat, box=box, max_side=side))) as png:
            assert np.array_equal(np.asarray(png.convert("RGB")), whole)
        assert np.array_equal(overlay_rgb(base, heat, box=box, max_side=side), whole)


def test_a_heat_layer_drawn_in_two_bands_has_the_pixels_of_one_drawn_whole() -> None:
    # heat_layer_png draws the top and bottom halves of its rows on two threads at once; the layer must be
    # the one drawn whole: palette colour, opacity from the level, the box outlined from float corners.
    from inference.explain import heat_layer_png
    from inference.explain._overlay import _PALETTE, _alpha_lut

    rng = np.random.default_rng(12)
    for rows, columns in ((1024, 1024), (700, 913), (257, 300)):
        levels = (rng.random((rows, columns)) ** 2 * 255).astype(np.uint8)
        box = Box(x0=columns // 3 + 1, y0=rows // 2 - 7, x1=columns // 2 + 5, y1=rows // 2 + 9)
        level = Image.fromarray(levels)
        opacity = level.point(_alpha_lut(0.2, 0.55))
        level.putpalette(_PALETTE)
        whole = level.convert("RGBA")
        whole.putalpha(opacity)
        expected = _float_outline(whole, box, (rows, columns))
        with Image.open(io.BytesIO(heat_layer_png(levels, box=box))) as png:
            assert png.mode == "RGBA"
            assert np.array_equal(np.asarray(png), expected), (rows, columns)
