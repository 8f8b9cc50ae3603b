"""PNG overlays decode, keep the original aspect ratio, stay grey where there is no heat."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference.explain import Box, overlay_png


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
