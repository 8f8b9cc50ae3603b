"""What drawing needs, kept with each result: the display rendering and the CAMs at model resolution.

Stored form (:class:`StoredRendering`, what the patient record keeps, about 100-200 KB for a 2048²
radiograph whatever the number of findings):

- ``display``: the display rendering as an 8-bit grayscale JPEG (quality 95, lowered step by step
  for an unusually noisy image so that it stays under :data:`DISPLAY_BUDGET`). A lossless PNG of a
  noisy 1024² radiograph is 450-550 KB and costs 50 ms or more to encode; the JPEG is a third of that
  at the largest and encodes in a few milliseconds. The rendering is a guide for viewing, never the
  image that is read (the PACS keeps the original), and Secondary Captures made from it say they went
  through lossy compression.
- ``cams``: the class activation maps of the positive findings, float16, in an ``npz`` (a few KB).
- ``geometry``: the original image's ``(rows, columns)`` and the model's input size; the letterbox is
  rebuilt from them exactly (:meth:`inference.preprocess.Geometry.letterbox`).

Overlays, heat layers and boxes are drawn from these (:class:`Rendering`) when they are asked for.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from inference.analysis._errors import RenderingCorrupt
from inference.preprocess import Geometry

BOX_SIDE: Final = 512
"""Longest side of the grid boxes are measured on: a CAM cell covers tens of such pixels (a 2048² film:
4 original pixels each), so a finer grid would only cost time (the box search grows with its area)."""
JPEG_QUALITIES: Final = (95, 90, 85, 75, 60, 40, 20, 10)
"""Tried in turn until the display JPEG fits :data:`DISPLAY_BUDGET`. Radiographs fit at 95; the low
qualities only bound what an image of pure noise can cost (10 fits 1024² of uniform noise)."""
DISPLAY_BUDGET: Final = 256 * 1024
_MAX_STORED_PIXELS: Final = 4096 * 4096  # a rendering is at most 1024 a side; anything larger is corrupt


def encode_display(display: np.ndarray) -> bytes:
    """The stored form of a display rendering: an 8-bit grayscale JPEG within :data:`DISPLAY_BUDGET`.

    Args:
        display: uint8 ``[rows, columns]`` display rendering.
    """
    import simplejpeg

    # libjpeg-turbo through simplejpeg: about a third faster than Pillow's writer for the same baseline
    # JPEG, and it lets go of the interpreter while it encodes, so the model scoring the image beside it
    # (this runs while the image is scored) is not held up. Pillow's writer holds the interpreter
    # throughout (measured: a Python thread beside it ran at half speed; beside this, at full speed).
    pixels = np.ascontiguousarray(display, dtype=np.uint8)[:, :, None]
    picture = b""
    for quality in JPEG_QUALITIES:
        picture = bytes(simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="GRAY"))
        if len(picture) <= DISPLAY_BUDGET:
            break
    return picture


@dataclass(frozen=True, eq=False)
class FindingHeat:
    """What a picture of one finding draws over the display rendering, made from its map alone.

    Attributes:
        levels: uint8 ``[rows, columns]`` heat levels on the display rendering's grid
            (:func:`inference.explain.cam_to_levels`).
        box: The hottest-region box in display pixels (:class:`inference.explain.Box`), or None.
    """

    levels: np.ndarray = field(repr=False)
    box: Any


def box_grid(geometry: Geometry) -> tuple[int, int]:
    """``(rows, columns)`` of the grid boxes are found on (at most :data:`BOX_SIDE` a side)."""
    from inference.explain import display_size

    return display_size(geometry.original_shape, BOX_SIDE)


def finding_heat(
    cam: np.ndarray, geometry: Geometry, shape: tuple[int, int], *, floor: int = 0
) -> FindingHeat:
    """The heat levels and box of one finding's map on a display grid of ``shape``; levels up to
    ``floor`` may be 0 (:func:`inference.explain.cam_to_levels`; an overlay passes the levels it does
    not show, :data:`inference.explain.OVERLAY_FLOOR`)."""
    from inference.explain import cam_box, cam_to_levels

    grid = box_grid(geometry)
    box = cam_box(cam, geometry, grid)
    return FindingHeat(
        levels=cam_to_levels(cam, geometry, shape, floor=floor),
        box=None if box is None else box.rescaled(grid, shape),
    )


def stored_geometry(stored: StoredRendering) -> Geometry:
    """The letterbox geometry kept with a stored rendering.

    Raises:
        RenderingCorrupt: The geometry cannot be read.
    """
    try:
        rows, columns = (int(v) for v in stored.geometry["original_shape"])
        return Geometry.letterbox((rows, columns), int(stored.geometry["input_size"]))
    except (KeyError, TypeError, ValueError) as e:
        raise RenderingCorrupt("The stored display rendering of this result cannot be read.") from e


_UNREADABLE: Final = (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile)
"""What numpy raises for a damaged ``npz`` or one of its members."""


def stored_maps(cams: bytes, codes: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """CAMs (float32) read from stored maps (:attr:`StoredRendering.cams`): those of ``codes`` that are
    kept, every kept one when None, none when empty.

    Raises:
        RenderingCorrupt: The maps cannot be read.
    """
    if codes is not None and not codes:
        return {}
    try:
        with np.load(io.BytesIO(cams), allow_pickle=False) as maps:
            wanted = maps.files if codes is None else [c for c in maps.files if c in codes]
            return {code: np.asarray(maps[code], dtype=np.float32) for code in wanted}
    except _UNREADABLE as e:
        raise RenderingCorrupt("The stored maps of this result cannot be read.") from e


def readable_maps(cams: bytes) -> tuple[dict[str, np.ndarray], frozenset[str] | None]:
    """Every stored map that can be read (float32, 2-D, not empty), read from one pass over the stored
    maps, and the findings they list, readable or not (None when they are not an archive at all)."""
    try:
        archive = np.load(io.BytesIO(cams), allow_pickle=False)
    except _UNREADABLE:
        return {}, None
    maps: dict[str, np.ndarray] = {}
    with archive:
        listed = frozenset(archive.files)
        for code in listed:
            try:
                found = np.asarray(archive[code], dtype=np.float32)
            except _UNREADABLE:
                continue  # listed, not readable
            if found.ndim == 2 and found.size > 0:
                maps[code] = found
    return maps, listed


@dataclass(frozen=True)
class StoredRendering:
    """The serialised form the patient record keeps (bytes and JSON only).

    Attributes:
        display: JPEG of the 8-bit display rendering.
        cams: ``npz`` of float16 ``[h, w]`` maps keyed by finding code.
        geometry: ``{"original_shape": [rows, columns], "input_size": S}``.
    """

    display: bytes
    cams: bytes
    geometry: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Rendering:
    """The display rendering and class activation maps of one analysed image.

    Attributes:
        display: uint8 ``[rows, columns]`` display rendering (dense structures bright).
        cams: float32 ``[h, w]`` class activation maps in logit units, per positive finding code.
        geometry: Letterbox geometry between the original image and the model input.
    """

    display: np.ndarray = field(repr=False)
    cams: Mapping[str, np.ndarray] = field(repr=False)
    geometry: Geometry
    encoded_display: bytes | None = field(default=None, repr=False)
    """:func:`encode_display` of ``display`` when already made (the server encodes it while the model
    runs); :meth:`to_stored` encodes it otherwise."""

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the display rendering (and of every overlay and heat layer)."""
        return int(self.display.shape[0]), int(self.display.shape[1])

    def _cam(self, code: str) -> np.ndarray:
        try:
            return self.cams[code]
        except KeyError:
            raise KeyError(f"No class activation map is kept for finding {code!r}.") from None

    def heat_of(self, code: str, *, floor: int = 0) -> FindingHeat:
        """The heat levels and display box of one finding (what its overlay and heat layer draw);
        ``floor``: see :func:`finding_heat`."""
        return finding_heat(self._cam(code), self.geometry, self.shape, floor=floor)

    def original_box(self, code: str) -> tuple[int, int, int, int] | None:
        """The box in original pixels ``(x0, y0, x1, y1)``, enclosing every original pixel it covers."""
        from inference.explain import cam_box

        grid = box_grid(self.geometry)
        box = cam_box(self._cam(code), self.geometry, grid)
        if box is None:
            return None
        full = box.rescaled(grid, self.geometry.original_shape)
        return (full.x0, full.y0, full.x1, full.y1)

    def overlay_rgb(self, code: str) -> np.ndarray:
        """uint8 ``[rows, columns, 3]``: the pixels of :meth:`overlay_png` (the PACS captures show them)."""
        from inference.explain import OVERLAY_FLOOR, overlay_rgb

        heat = self.heat_of(code, floor=OVERLAY_FLOOR)
        return overlay_rgb(self.display, heat.levels, box=heat.box, max_side=max(self.shape))

    def overlay_png(self, code: str, heat: FindingHeat | None = None) -> bytes:
        """The heatmap overlay PNG of one finding (display geometry); ``heat``: its :meth:`heat_of`,
        when already made (with a ``floor`` of at most :data:`inference.explain.OVERLAY_FLOOR`)."""
        from inference.explain import OVERLAY_FLOOR, overlay_png

        heat = heat if heat is not None else self.heat_of(code, floor=OVERLAY_FLOOR)
        return overlay_png(self.display, heat.levels, box=heat.box, max_side=max(self.shape))

    def heat_layer_png(self, code: str, heat: FindingHeat | None = None) -> bytes:
        """The transparent RGBA heat layer of one finding, pixel for pixel over :meth:`display_png`."""
        from inference.explain import heat_layer_png

        heat = heat if heat is not None else self.heat_of(code)
        return heat_layer_png(heat.levels, box=heat.box)

    def display_png(self) -> bytes:
        """The display rendering as an 8-bit grayscale PNG."""
        from inference.explain import encode_png

        return encode_png(self.display)

    def to_stored(self) -> StoredRendering:
        """The serialised form (:class:`StoredRendering`)."""
        picture = self.encoded_display if self.encoded_display is not None else encode_display(self.display)
        maps = io.BytesIO()
        arrays: dict[str, Any] = {code: np.asarray(cam, dtype=np.float16) for code, cam in self.cams.items()}
        np.savez_compressed(maps, **arrays)
        return StoredRendering(
            display=picture,
            cams=maps.getvalue(),
            geometry={
                "original_shape": [int(v) for v in self.geometry.original_shape],
                "input_size": int(self.geometry.input_size),
            },
        )

    @classmethod
    def from_stored(cls, stored: StoredRendering, *, codes: Collection[str] | None = None) -> Rendering:
        """Read back :meth:`to_stored` output.

        Args:
            stored: The serialised form.
            codes: The findings whose CAMs are read (one picture needs one; none for the display
                image alone); every kept CAM when None. A code without a kept CAM is left out.

        Raises:
            RenderingCorrupt: The bytes or the geometry cannot be read.
        """
        from PIL import Image

        geometry = stored_geometry(stored)
        try:
            with Image.open(io.BytesIO(stored.display)) as image:
                if image.width * image.height > _MAX_STORED_PIXELS:
                    raise RenderingCorrupt("The stored display rendering is larger than any rendering made.")
                grey = image if image.mode == "L" else image.convert("L")  # a kept JPEG is "L": no copy
                display = np.ascontiguousarray(np.asarray(grey, dtype=np.uint8))
        except RenderingCorrupt:
            raise
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise RenderingCorrupt("The stored display rendering of this result cannot be read.") from e
        return cls(display=display, cams={}, geometry=geometry).with_stored_cams(stored.cams, codes)

    def with_stored_cams(self, cams: bytes, codes: Collection[str] | None = None) -> Rendering:
        """The same display and geometry with CAMs read from stored maps (:attr:`StoredRendering.cams`).

        A display rendering decoded once can so draw each finding it is asked for.

        Args:
            cams: The stored maps.
            codes: The findings whose CAMs are read; every kept CAM when None; none when empty. A code
                without a kept CAM is left out.

        Raises:
            RenderingCorrupt: The maps cannot be read.
        """
        return Rendering(display=self.display, cams=stored_maps(cams, codes), geometry=self.geometry)
