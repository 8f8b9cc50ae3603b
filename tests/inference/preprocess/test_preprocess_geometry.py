"""Letterbox geometry: a bright disc lands where expected and CAM peaks map back to it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import uid

from inference.dicom import Limits, read_instance
from inference.preprocess import Geometry, PreprocessParams, prepare, prepare_pixels, resize

sys.path.insert(0, str(Path(__file__).parents[1] / "dicom"))
from _dicom_factory import compressed, dataset, phantom  # noqa: E402

LIMITS = Limits(max_instance_bytes=64 << 20, max_pixels=16 << 20, max_instances=1)


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _centroid(weights: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    total = weights.sum()
    return float((yy * weights).sum() / total), float((xx * weights).sum() / total)


def test_area_resize_keeps_means_and_matches_block_means() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((120, 90), dtype=np.float32)
    np.testing.assert_allclose(
        resize(image, (30, 45)), image.reshape(30, 4, 45, 2).mean(axis=(1, 3)), atol=1e-5
    )
    assert resize(image, (37, 29)).mean() == pytest.approx(image.mean(), abs=1e-3)


def _exact_area(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area average in float64 through the integral of the piecewise-constant image (the definition)."""

    def along_last(values: np.ndarray, out: int) -> np.ndarray:
        n = values.shape[-1]
        integral = np.concatenate((np.zeros((*values.shape[:-1], 1)), np.cumsum(values, axis=-1)), axis=-1)
        edges = np.linspace(0.0, n, out + 1)
        base = np.minimum(np.floor(edges).astype(int), n - 1)
        at = integral[..., base] + (edges - base) * (integral[..., base + 1] - integral[..., base])
        return np.diff(at, axis=-1) * (out / n)

    columns = along_last(image.astype(np.float64), shape[1])
    return along_last(columns.T, shape[0]).T


# 1955 x 1841 -> 160 x 151 (a CR film to a model input) and 2048 -> 160: shrinks of four and more, summed
# per segment; 300 -> 97 and 120 -> 70, less than fourfold: a float32 running sum, a little less exact.
@pytest.mark.parametrize(
    ("source", "target", "tolerance"),
    [
        ((1955, 1841), (160, 151), 2e-6),
        ((2048, 2048), (160, 160), 2e-6),
        ((300, 300), (97, 97), 3e-5),
        ((120, 90), (70, 50), 3e-5),
    ],
)
def test_area_resize_is_the_exact_area_average(
    source: tuple[int, int], target: tuple[int, int], tolerance: float
) -> None:
    image = np.random.default_rng(1).random(source, dtype=np.float32)
    np.testing.assert_allclose(resize(image, target), _exact_area(image, target), atol=tolerance)


@pytest.mark.parametrize(
    ("shape", "centre"),
    [((400, 300), (100, 200)), ((300, 500), (220, 80)), ((256, 256), (40, 200))],
    ids=["portrait", "landscape", "square"],
)
def test_disc_lands_where_expected_and_maps_back(shape: tuple[int, int], centre: tuple[int, int]) -> None:
    size = 64
    geometry = Geometry.letterbox(shape, size)
    assert max(geometry.content_shape) == size
    # Centred letterbox: the padding is split evenly.
    assert geometry.pad_top * 2 + geometry.content_shape[0] in (size, size - 1)
    assert geometry.pad_left * 2 + geometry.content_shape[1] in (size, size - 1)

    disc = _disc(shape, centre, 20)
    model = geometry.to_model(disc.astype(np.float32))
    expected = (
        geometry.pad_top + (centre[0] + 0.5) * geometry.content_shape[0] / shape[0] - 0.5,
        geometry.pad_left + (centre[1] + 0.5) * geometry.content_shape[1] / shape[1] - 0.5,
    )
    assert np.allclose(_centroid(model), expected, atol=0.5)
    mask = geometry.to_model(disc)
    assert mask.dtype == np.bool_ and np.allclose(_centroid(mask.astype(float)), expected, atol=1.0)

    # A CAM-like 16 x 16 map peaking on the cell under the disc maps back to that cell's centre in
    # original pixels (bilinear maxima sit on grid nodes), which is within one cell of the disc.
    cam_size = 16
    cell = size / cam_size
    node = (int(expected[0] // cell), int(expected[1] // cell))
    cam = np.zeros((cam_size, cam_size), dtype=np.float32)
    cam[node] = 1.0
    back = geometry.to_original(cam)
    assert back.shape == shape
    found = np.unravel_index(np.argmax(back), shape)
    node_centre = geometry.model_to_original_point((node[0] + 0.5) * cell, (node[1] + 0.5) * cell)
    tolerance = 1 / geometry.scale
    assert (
        abs(found[0] + 0.5 - node_centre[0]) <= tolerance
        and abs(found[1] + 0.5 - node_centre[1]) <= tolerance
    )
    assert (
        abs(node_centre[0] - centre[0]) <= cell * tolerance
        and abs(node_centre[1] - centre[1]) <= cell * tolerance
    )


def test_padding_is_cropped_out_when_mapping_back() -> None:
    geometry = Geometry.letterbox((100, 50), 32)  # content 32 x 16, 8 columns of padding each side
    model_map = np.zeros((32, 32), dtype=np.float32)
    model_map[:, :8] = 1.0  # only the left padding is hot
    model_map[:, 8:24] = 0.25
    back = geometry.to_original(model_map)
    assert back.shape == (100, 50)
    assert back[:, 2:-2].max() == pytest.approx(0.25)


def test_prepared_image_is_centred_with_black_padding() -> None:
    params = PreprocessParams(input_size=32)
    pixels = np.full((100, 50), 4000, dtype=np.uint16)
    prepared = prepare_pixels(
        pixels, photometric="MONOCHROME2", window_centers=[2000], window_widths=[4000], params=params
    )
    unit = prepared.tensor[0] * params.std + params.mean
    assert np.allclose(unit[:, :8], 0) and np.allclose(unit[:, 24:], 0) and np.allclose(unit[:, 8:24], 1)


@pytest.mark.parametrize("size", [(1100, 900), (900, 1100)], ids=["portrait", "landscape"])
def test_reduced_j2k_decode_gives_the_same_tensor_and_geometry(size: tuple[int, int]) -> None:
    params = PreprocessParams(input_size=112)  # short side 900 / 2 >= 4 x 112: one level dropped
    centre = (size[0] // 4, size[1] * 2 // 3)
    pixels = phantom(*size, disc=(*centre, 60))
    data = compressed(
        dataset(pixels, bits_stored=12, WindowCenter=2048, WindowWidth=4096), uid.JPEG2000, j2k_cr=[10]
    )
    full = read_instance(data, limits=LIMITS)
    # A small film, so the display floor of the reduced decode is lowered to let it drop one level.
    reduced = read_instance(data, limits=LIMITS, target_size=params.input_size, min_long_side=0)
    assert full.reduction == 1 and reduced.reduction == 2
    a, b = prepare(full, params), prepare(reduced, params)
    assert a.geometry == b.geometry and a.geometry.original_shape == size
    diff = np.abs(a.tensor - b.tensor) * params.std  # back to [0, 1] units
    assert diff.mean() < 0.02

    # The disc maps back to the same full-resolution place through the reduced decode's geometry.
    bright = (b.tensor[0] * params.std + params.mean) > 0.9
    model_centre = _centroid(bright.astype(float))
    back = b.geometry.model_to_original_point(model_centre[0] + 0.5, model_centre[1] + 0.5)
    assert abs(back[0] - centre[0]) < 8 and abs(back[1] - centre[1]) < 8
