"""cam_box finds exactly the box of the fully sampled heatmap, whatever the map, the geometry and the level.

The box is in results, the SR sent to PACS and the overlays, so the shortcut must never move an edge.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.explain import Box, cam_box, cam_to_heatmap, display_size, hottest_box
from inference.preprocess import Geometry


def _smooth(rng: np.random.Generator, side: int) -> np.ndarray:
    """A trained-looking map: one to three Gaussian blobs over a negative floor (some evidence always)."""
    yy, xx = np.mgrid[0:side, 0:side]
    cam = np.full((side, side), -0.5)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, side - 1), rng.uniform(0, side - 1)
        spread = rng.uniform(1.0, side / 3 + 1)
        cam += rng.uniform(1.0, 4.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
    return cam.astype(np.float32)


def _cam(kind: str, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "fragmented":  # what a random-weight model gives: hot nodes scattered everywhere
        return rng.normal(size=(side, side)).astype(np.float32)
    if kind == "smooth":
        return _smooth(rng, side)
    if kind == "plateaus":  # few distinct values: exact ties of the peak, regions that touch only at corners
        return np.round(rng.normal(size=(side, side)) * 1.5).astype(np.float32)
    if kind == "one node":
        cam = np.full((side, side), -2.0, np.float32)
        cam[tuple(rng.integers(0, side, 2))] = 3.0
        return cam
    return np.ones((side, side), np.float32)  # flat: every sample ties with the peak


shapes = st.one_of(
    st.tuples(st.integers(300, 3000), st.integers(60, 300)),  # portrait
    st.tuples(st.integers(60, 300), st.integers(300, 3000)),  # landscape
    st.integers(20, 3000).map(lambda side: (side, side)),  # square
    st.tuples(st.integers(1, 3000), st.integers(1, 3000)),
)


@given(
    kind=st.sampled_from(["fragmented", "smooth", "plateaus", "one node", "flat"]),
    side=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
    shape=shapes,
    input_size=st.sampled_from([64, 160, 256]),
    max_side=st.sampled_from([512, 1024, 7]),
    level=st.one_of(st.sampled_from([0.5, 1.0, 0.3]), st.floats(0.01, 1.0)),
)
@settings(max_examples=400, deadline=None, derandomize=True)
def test_cam_box_is_the_box_of_the_fully_sampled_heatmap(
    kind: str, side: int, seed: int, shape: tuple[int, int], input_size: int, max_side: int, level: float
) -> None:
    geometry = Geometry.letterbox(shape, input_size)
    cam = _cam(kind, side, seed)
    grid = display_size(shape, max_side)  # 7: a grid coarser than the map, several nodes per pixel
    expected = hottest_box(cam_to_heatmap(cam, geometry, shape=grid), level=level)
    assert cam_box(cam, geometry, grid, level=level) == expected


def test_the_benchmark_sizes_give_the_same_boxes_on_many_fragmented_and_smooth_maps() -> None:
    # The server's case: 20x20 maps of a 160 model, boxes on a grid of at most 512 a side.
    rng = np.random.default_rng(7)
    for i in range(120):
        shape = [(2048, 2048), (2500, 2048), (2048, 2500), (1024, 1024)][i % 4]
        geometry = Geometry.letterbox(shape, 160)
        grid = display_size(shape, 512)
        cam = _cam("fragmented" if i % 2 else "smooth", 20, int(rng.integers(2**32)))
        expected = hottest_box(cam_to_heatmap(cam, geometry, shape=grid))
        assert expected is not None
        assert cam_box(cam, geometry, grid) == expected, i


def test_a_second_region_as_hot_as_the_first_does_not_move_the_box() -> None:
    # Two equal peaks far apart: both boxes start from the first maximum in raster order.
    cam = np.full((20, 20), -1.0, np.float32)
    cam[15, 3] = cam[4, 16] = 2.0
    geometry = Geometry.letterbox((2048, 2048), 160)
    box = cam_box(cam, geometry, (512, 512))
    assert box == hottest_box(cam_to_heatmap(cam, geometry, shape=(512, 512)))
    assert box is not None and box.contains(4.5 * 25.6, 16.5 * 25.6)  # the upper one: first in raster order


def test_warm_bridges_between_hot_cells_join_the_region() -> None:
    # A ring of warm nodes around the peak reaches far; the region follows it only above the level.
    cam = np.full((20, 20), -1.0, np.float32)
    cam[2:18, 2] = cam[2:18, 17] = cam[2, 2:18] = cam[17, 2:18] = 1.2
    cam[2, 9] = 2.0
    geometry = Geometry.letterbox((1000, 1000), 160)
    grid = (500, 500)
    for level, joined in ((0.5, True), (0.7, False)):
        box = cam_box(cam, geometry, grid, level=level)
        assert box == hottest_box(cam_to_heatmap(cam, geometry, shape=grid), level=level)
        assert box is not None and (box.height > 300) is joined, level
    assert cam_box(np.zeros((20, 20), np.float32), geometry, grid) is None
    assert isinstance(cam_box(cam, geometry, grid), Box)


def test_noise_sampled_about_one_pixel_a_node_gives_the_same_boxes() -> None:
    # A grid about as fine as the map keeps its noise: runs that touch only at a corner, runs side by
    # side in one row, chains that fork and join; every level.
    rng = np.random.default_rng(3)
    for i in range(600):
        side = int(rng.integers(3, 30))
        grid = (int(rng.integers(2, 40)), int(rng.integers(2, 40)))
        geometry = Geometry.letterbox(grid, int(rng.choice([64, 160])))
        cam = rng.random((side, side)).astype(np.float32)
        level = float(rng.uniform(0.05, 1.0))
        expected = hottest_box(cam_to_heatmap(cam, geometry, shape=grid), level=level)
        assert cam_box(cam, geometry, grid, level=level) == expected, i
