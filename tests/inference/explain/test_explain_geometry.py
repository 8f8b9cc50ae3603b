"""CAMs land where the evidence is in the original image, and the box surrounds the hottest region."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models

from inference.explain import Box, cam_to_heatmap, hottest_box
from inference.preprocess import Geometry, PreprocessParams, prepare_pixels


def test_heatmap_has_the_original_shape_and_is_normalised() -> None:
    geometry = Geometry.letterbox((300, 200), 64)
    cam = np.full((8, 8), -1.0, dtype=np.float32)
    cam[2, 3] = 4.0
    heat = cam_to_heatmap(cam, geometry)
    assert heat.shape == (300, 200) and heat.dtype == np.float32
    assert heat.max() == pytest.approx(1.0) and heat.min() == 0.0  # negative evidence dropped


def test_a_map_without_positive_evidence_gives_no_heat_and_no_box() -> None:
    heat = cam_to_heatmap(-np.ones((8, 8), np.float32), Geometry.letterbox((100, 120), 64))
    assert not heat.any()
    assert hottest_box(heat) is None


def test_cam_cell_maps_through_the_letterbox_to_the_right_place() -> None:
    # 400 rows x 200 columns in a 64 input: the image occupies columns 16..47 of the model input.
    geometry = Geometry.letterbox((400, 200), 64)
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[2, 4] = 1.0  # model rows 16..23, columns 32..39 → original rows 100..149, columns 100..149
    box = hottest_box(cam_to_heatmap(cam, geometry), level=0.5)
    assert box is not None
    assert box.contains(125, 125)
    assert 85 <= box.y0 <= 115 and 135 <= box.y1 <= 165
    assert 85 <= box.x0 <= 115 and 135 <= box.x1 <= 165


def test_box_follows_only_the_region_around_the_maximum() -> None:
    heat = np.zeros((100, 100), np.float32)
    heat[10:20, 60:90] = 1.0  # hottest region
    heat[70:95, 5:30] = 0.8  # a second, separate warm region
    heat[19, 59] = 0.0
    heat[20, 59] = 0.9  # touches the hottest region only diagonally: 8-connected, so included
    assert hottest_box(heat, level=0.5) == Box(x0=59, y0=10, x1=90, y1=21)
    heat[20:70, 70] = 0.6  # a bridge down and across joins the two regions
    heat[69, 29:71] = 0.6
    assert hottest_box(heat, level=0.5) == Box(x0=5, y0=10, x1=90, y1=95)
    assert hottest_box(heat, level=0.7) == Box(x0=59, y0=10, x1=90, y1=21)  # the bridge is below 0.7


def test_tiny_model_box_surrounds_a_bright_blob_in_the_original_image(tmp_path: Path) -> None:
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    params = PreprocessParams.from_metadata(
        json.loads(session.get_modelmeta().custom_metadata_map["dxassist.preprocess"])
    )
    rows, columns = 640, 480
    yy, xx = np.mgrid[0:rows, 0:columns]
    image = np.full((rows, columns), 800, dtype=np.uint16)
    centre = (448, 120)
    image[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < 60**2] = 4000
    prepared = prepare_pixels(image, photometric="MONOCHROME2", params=params)
    _, cam = session.run(["logits", "cam"], {"image": prepared.tensor[None]})
    heat = cam_to_heatmap(cam[0, -1], prepared.geometry)
    assert heat.shape == (rows, columns)
    peak = np.unravel_index(int(heat.argmax()), heat.shape)
    assert abs(peak[0] - centre[0]) < 80 and abs(peak[1] - centre[1]) < 80
    box = hottest_box(heat)
    assert box is not None and box.contains(*centre)
    assert box.width < columns / 2 and box.height < rows / 2


def test_box_of_a_big_image_found_at_display_size_is_in_original_pixels(tmp_path: Path) -> None:
    # What the server does for a 2048-row radiograph: heat and box at the overlay's 1024 rows, then the box
    # scaled back; it must match the box found on the full-resolution heatmap to within one display pixel.
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    params = PreprocessParams.from_metadata(
        json.loads(session.get_modelmeta().custom_metadata_map["dxassist.preprocess"])
    )
    rows, columns = 2048, 1536
    yy, xx = np.mgrid[0:rows, 0:columns]
    image = np.full((rows, columns), 800, dtype=np.uint16)
    centre = (1400, 1100)
    image[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < 200**2] = 4000
    prepared = prepare_pixels(image, photometric="MONOCHROME2", params=params)
    _, cam = session.run(["logits", "cam"], {"image": prepared.tensor[None]})
    display = (1024, 768)

    heat = cam_to_heatmap(cam[0, -1], prepared.geometry, shape=display)
    assert heat.shape == display and heat.max() == pytest.approx(1.0)
    small = hottest_box(heat)
    assert small is not None
    box = small.rescaled(display, (rows, columns))
    full = hottest_box(cam_to_heatmap(cam[0, -1], prepared.geometry))
    assert full is not None
    assert box.contains(*centre) and full.contains(*centre)
    assert 0 <= box.x0 < box.x1 <= columns and 0 <= box.y0 < box.y1 <= rows
    for edge in ("x0", "y0", "x1", "y1"):
        assert abs(getattr(box, edge) - getattr(full, edge)) <= 2, edge
    assert box.x1 > display[1] or box.y1 > display[0]  # original pixels, not display ones


def test_a_rescaled_box_covers_every_original_pixel_of_its_display_pixels() -> None:
    small = Box(x0=10, y0=20, x1=11, y1=30)
    assert small.rescaled((100, 100), (300, 250)) == Box(x0=25, y0=60, x1=28, y1=90)
    assert small.rescaled((100, 100), (100, 100)) == small
    # Partially covered original pixels are inside; the result never leaves the image.
    assert Box(x0=0, y0=0, x1=3, y1=3).rescaled((3, 3), (10, 10)) == Box(x0=0, y0=0, x1=10, y1=10)
    assert Box(x0=1, y0=1, x1=2, y1=2).rescaled((3, 3), (10, 10)) == Box(x0=3, y0=3, x1=7, y1=7)


def test_cam_box_equals_the_box_of_the_sampled_heatmap() -> None:
    # cam_box samples only where the region can be; it must find exactly the box of the full sample.
    from inference.explain import cam_box, display_size

    rng = np.random.default_rng(1)
    for i in range(200):
        shape = (int(rng.integers(40, 2600)), int(rng.integers(40, 2600)))
        geometry = Geometry.letterbox(shape, int(rng.choice([64, 160, 256])))
        side = int(rng.choice([2, 5, 8, 16]))
        cam = rng.normal(size=(side, side)).astype(np.float32)
        if i % 3 == 0:
            cam = np.abs(cam) + 2.0  # a broad region: the whole image is warm
        if i % 7 == 0:
            cam = np.ones((side, side), np.float32)  # a flat map: ties everywhere
        grid = display_size(shape, 1024)
        expected = hottest_box(cam_to_heatmap(cam, geometry, shape=grid))
        assert cam_box(cam, geometry, grid) == expected, (shape, side, i)
    assert cam_box(-np.ones((8, 8), np.float32), Geometry.letterbox((100, 120), 64), (100, 120)) is None


def _flood_fill_box(heat: np.ndarray, level: float) -> tuple[int, int, int, int] | None:
    """Reference: pixel-by-pixel 8-connected flood fill from the maximum (slow, obviously right)."""
    peak = float(heat.max(initial=0.0))
    if peak <= 0.0:
        return None
    inside = heat >= level * peak
    seed = tuple(int(v) for v in np.unravel_index(int(np.argmax(heat)), heat.shape))
    seen, stack = {seed}, [seed]
    while stack:
        r, c = stack.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                n = (r + dr, c + dc)
                if 0 <= n[0] < heat.shape[0] and 0 <= n[1] < heat.shape[1] and inside[n] and n not in seen:
                    seen.add(n)
                    stack.append(n)
    rows = [p[0] for p in seen]
    columns = [p[1] for p in seen]
    return min(columns), min(rows), max(columns) + 1, max(rows) + 1


def test_hottest_box_is_the_box_of_the_8_connected_region_around_the_maximum() -> None:
    """Noisy maps with many separate runs per row, touching diagonally, at every level."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        rows, columns = (int(v) for v in rng.integers(1, 30, 2))
        heat = rng.random((rows, columns)).astype(np.float32)
        level = float(rng.uniform(0.05, 1.0))
        box = hottest_box(heat, level=level)
        assert box is not None
        assert (box.x0, box.y0, box.x1, box.y1) == _flood_fill_box(heat, level)


def test_heat_levels_are_the_overlays_quantised_heatmap_exactly() -> None:
    # cam_to_levels gives the levels an overlay draws without the float heat of the whole grid: equal,
    # level for level, to quantising cam_to_heatmap as the overlay does, so the pictures are unchanged.
    from inference.explain import cam_to_levels, heat_layer_png, overlay_png

    rng = np.random.default_rng(5)
    for i in range(120):
        original = (int(rng.integers(1, 2600)), int(rng.integers(1, 2600)))
        geometry = Geometry.letterbox(original, int(rng.choice([64, 160, 256])))
        side = int(rng.choice([1, 2, 5, 8, 20]))
        cam = (rng.normal(size=(side, side + i % 2)) * rng.choice([1e-3, 1.0, 60000.0])).astype(np.float32)
        if i % 5 == 0:
            cam[0, 0] = np.nan  # dropped, as by cam_to_heatmap
        if i % 11 == 0:
            cam = -np.abs(cam)  # no positive evidence: no heat
        if i % 13 == 0:
            cam = np.clip(cam, -6e4, 6e4).astype(np.float16).astype(np.float32)  # as the record keeps them
        grid = (int(rng.integers(1, 1100)), int(rng.integers(1, 1100)))
        heat = cam_to_heatmap(cam, geometry, shape=grid)
        expected = np.rint(np.clip(heat, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        levels = cam_to_levels(cam, geometry, grid)
        assert levels.dtype == np.uint8 and levels.shape == grid
        assert np.array_equal(levels, expected), (original, side, grid, i)
    # The pictures drawn from the levels are those drawn from the heat, byte for byte.
    grey = rng.integers(0, 256, (300, 410), dtype=np.uint8)
    geometry = Geometry.letterbox((600, 820), 64)
    cam = rng.normal(size=(8, 8)).astype(np.float32)
    heat, levels = cam_to_heatmap(cam, geometry, shape=(300, 410)), cam_to_levels(cam, geometry, (300, 410))
    box = Box(x0=40, y0=30, x1=200, y1=150)
    assert overlay_png(grey, levels, box=box, max_side=410) == overlay_png(grey, heat, box=box, max_side=410)
    assert heat_layer_png(levels, box=box) == heat_layer_png(heat, box=box)
    # Levels at another size than the picture are resampled as heat levels / 255.
    assert _decoded_shape(overlay_png(grey, levels, max_side=200)) == (146, 200)


def test_an_overlay_draws_the_same_pixels_from_levels_made_only_where_they_show() -> None:
    # cam_to_levels(floor=OVERLAY_FLOOR) leaves at 0 column blocks whose heat cannot rise above what an
    # overlay shows (a focal finding: most of the picture); every level above the floor is exact, and
    # the overlay is byte for byte the one drawn from the whole heat.
    from inference.explain import OVERLAY_FLOOR, cam_to_levels, overlay_png

    rng = np.random.default_rng(11)
    skipped = 0
    for i in range(60):
        original = (int(rng.integers(200, 2600)), int(rng.integers(200, 2600)))
        geometry = Geometry.letterbox(original, int(rng.choice([64, 160])))
        side = int(rng.choice([5, 8, 20]))
        cam = (rng.normal(size=(side, side)) * 0.05).astype(np.float32)  # faint everywhere
        cam[int(rng.integers(0, side)), int(rng.integers(0, side))] = float(rng.uniform(2.0, 30.0))  # focal
        if i % 3 == 0:
            cam = rng.normal(size=(side, side)).astype(np.float32)  # diffuse
        grid = (int(rng.integers(100, 1100)), int(rng.integers(100, 1100)))
        exact = cam_to_levels(cam, geometry, grid)
        floored = cam_to_levels(cam, geometry, grid, floor=OVERLAY_FLOOR)
        shown = exact > OVERLAY_FLOOR
        assert np.array_equal(floored[shown], exact[shown]), i
        assert np.all((floored[~shown] == exact[~shown]) | (floored[~shown] == 0)), i
        skipped += int(np.count_nonzero(floored != exact) > 0)
        grey = rng.integers(0, 256, grid, dtype=np.uint8)
        box = Box(x0=1, y0=1, x1=grid[1] // 2, y1=grid[0] // 2)
        side_px = max(grid)
        assert overlay_png(grey, floored, box=box, max_side=side_px) == overlay_png(
            grey, exact, box=box, max_side=side_px
        ), i
    assert skipped > 10  # focal heat: the blocks far from it were left at 0


def _decoded_shape(png: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.height, image.width
