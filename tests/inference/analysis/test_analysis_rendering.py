"""A stored rendering read back for one picture: only what that picture needs, the same picture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inference.analysis import Rendering, RenderingCorrupt
from inference.preprocess import Geometry


@pytest.fixture(scope="module")
def rendering() -> Rendering:
    rows = np.linspace(0.0, 1.0, 512)
    display = np.round(np.add.outer(rows, rows) * 120 + 10).astype(np.uint8)
    yy, xx = np.mgrid[0:40, 0:40]
    cams = {
        "nodule": (3 * np.exp(-((yy - 12) ** 2 + (xx - 25) ** 2) / 30.0) - 0.5).astype(np.float32),
        "effusion": (2 * np.exp(-((yy - 30) ** 2 + (xx - 8) ** 2) / 60.0) - 0.2).astype(np.float32),
    }
    return Rendering(display=display, cams=cams, geometry=Geometry.letterbox((1024, 1024), 40))


def test_a_picture_of_one_finding_reads_its_map_only_and_draws_the_same_overlay(rendering: Rendering) -> None:
    stored = rendering.to_stored()
    everything = Rendering.from_stored(stored)
    one = Rendering.from_stored(stored, codes=("effusion",))
    assert sorted(everything.cams) == ["effusion", "nodule"] and list(one.cams) == ["effusion"]
    assert np.array_equal(one.display, everything.display) and one.geometry == everything.geometry
    assert one.overlay_png("effusion") == everything.overlay_png("effusion")
    assert one.heat_layer_png("effusion") == everything.heat_layer_png("effusion")
    assert not Rendering.from_stored(stored, codes=("pneumothorax",)).cams  # not kept: absent


def test_the_display_image_needs_no_map(rendering: Rendering) -> None:
    stored = rendering.to_stored()
    unreadable_maps = dataclasses.replace(stored, cams=b"not an npz")
    image = Rendering.from_stored(unreadable_maps, codes=())
    assert not image.cams and image.display_png() == Rendering.from_stored(stored).display_png()
    with pytest.raises(RenderingCorrupt):
        Rendering.from_stored(unreadable_maps, codes=("nodule",))
