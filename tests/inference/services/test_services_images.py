"""The decoded renderings kept between the pictures of a result: bounded, least recently used out."""

from __future__ import annotations

import numpy as np

from inference.analysis import Rendering
from inference.preprocess import Geometry
from inference.services._images import KEPT_RENDERINGS, _Decoded, _DecodedRenderings


def test_the_kept_renderings_are_bounded_and_the_least_recently_used_goes_first() -> None:
    rendering = Rendering(display=np.zeros((4, 4), np.uint8), cams={}, geometry=Geometry.letterbox((4, 4), 4))
    kept = _DecodedRenderings()
    for i in range(KEPT_RENDERINGS):
        kept.put(f"r{i}", _Decoded(rendering=rendering, maps={}, listed=frozenset(), model=("m", "1")))
    assert kept.get("r0") is not None  # r0 used again: r1 is now the least recently used
    kept.put("new", _Decoded(rendering=rendering, maps={}, listed=frozenset(), model=None))
    assert kept.get("r1") is None
    assert all(kept.get(f"r{i}") is not None for i in (0, *range(2, KEPT_RENDERINGS)))
    assert kept.get("new") is not None
