"""The pictures of an imaging result, drawn when they are looked at: display image, overlays, heat layers.

A result keeps its display rendering and the CAMs of its positive findings (:mod:`inference.analysis`);
the first request for a picture draws it on the worker pool and keeps the PNG in a bounded in-process
cache, so a reader flipping between findings is answered from memory. The decoded display rendering of
the last results drawn is kept too, so the first request for another picture of the same result (the
next finding, its heat layer, the image) reads neither the record's rendering nor the JPEG again.
Results filed before renderings were kept still answer their stored overlay PNGs. Every access is
authorised like reading the result (same permission and facility scope) and audited, in the transaction
that reads the stored rendering and decodes what the picture is drawn from (``Results.read_picture``), so
its entry says what became of it; the picture is painted once that has committed.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from inference.analysis import (
    FindingHeat,
    Rendering,
    RenderingCorrupt,
    StoredRendering,
    display_shape,
    finding_heat,
    observe_stage,
    readable_maps,
    stored_geometry,
)
from inference.explain import OVERLAY_FLOOR, picture_thread
from inference.record import FAILURE, NotFound, PictureRows
from inference.security import scope_for
from inference.services._access import audit_entry, served
from inference.services._context import Actor, Context, db
from inference.services._errors import PictureUnreadable

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Picture = Literal["image", "overlay", "layer"]

CACHE_BYTES: Final = 64 * 1024 * 1024
"""Memory the drawn PNGs of one process may hold (least recently used first out)."""
KEPT_RENDERINGS: Final = 8
"""Decoded display renderings one process keeps (at most 1024² bytes each, about 1 MB)."""


class PictureCache:
    """A bounded LRU of drawn PNGs, keyed by (result id, picture, finding code); thread-safe.

    Results are immutable once filed, so a drawn picture never goes stale; the bound keeps memory flat.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._max = max_bytes
        self._items: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        """The cached PNG, or None."""
        with self._lock:
            png = self._items.get(key)
            if png is not None:
                self._items.move_to_end(key)
            return png

    def put(self, key: tuple[str, str, str], png: bytes) -> None:
        """Keep ``png``; evict the least recently used until the cache fits its bound."""
        if len(png) > self._max:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = png
            self._size += len(png)
            while self._size > self._max:
                _key, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)


@dataclass(frozen=True, eq=False)
class _Decoded:
    """A result's display rendering decoded (no CAMs), its stored maps read, and the model.

    Attributes:
        rendering: The display rendering and geometry.
        maps: The maps that could be read, by finding code.
        listed: The findings the stored maps list (readable or not); None when the stored maps are not
            an archive that can be read at all.
        model: ``(name, version)`` of the model that made them, when known.
    """

    rendering: Rendering
    maps: Mapping[str, np.ndarray]
    listed: frozenset[str] | None
    model: tuple[str, str] | None


@dataclass(frozen=True, eq=False)
class _Read:
    """What :func:`_read` gives: what the picture is drawn from, the display rendering alone, the
    finding's heat (None for the display image), and every map of a stored rendering read."""

    rendering: Rendering
    display: Rendering
    heat: FindingHeat | None
    maps: Mapping[str, np.ndarray]
    listed: frozenset[str] | None


class _DecodedRenderings:
    """The last :data:`KEPT_RENDERINGS` decoded renderings by result id (least recently used first out)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, _Decoded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, result_id: str) -> _Decoded | None:
        with self._lock:
            decoded = self._items.get(result_id)
            if decoded is not None:
                self._items.move_to_end(result_id)
            return decoded

    def put(self, result_id: str, decoded: _Decoded) -> None:
        with self._lock:
            self._items[result_id] = decoded
            self._items.move_to_end(result_id)
            while len(self._items) > KEPT_RENDERINGS:
                self._items.popitem(last=False)


_CACHES: dict[int, tuple[PictureCache, _DecodedRenderings]] = {}
_CACHES_LOCK = threading.Lock()


def _caches(ctx: Context) -> tuple[PictureCache, _DecodedRenderings]:
    # One pair per record (per process in practice), made on first use: the Context stays as it is.
    with _CACHES_LOCK:
        return _CACHES.setdefault(id(ctx.record), (PictureCache(), _DecodedRenderings()))


def _read(source: StoredRendering | _Decoded, picture: Picture, code: str) -> _Read:
    """What one picture is drawn from (:class:`_Read`); a stored rendering is decoded and all its maps
    read, for the next pictures of the result.

    Raises:
        RenderingCorrupt: The stored display rendering or the finding's map cannot be read.
    """
    if isinstance(source, _Decoded):
        display = source.rendering
        if picture == "image":
            return _Read(display, display, None, source.maps, source.listed)
        if code not in source.maps:
            raise RenderingCorrupt("The stored maps of this result cannot be read.")
        rendering = Rendering(
            display=display.display, cams={code: source.maps[code]}, geometry=display.geometry
        )
        drawn = rendering.heat_of(code, floor=_floor(picture))
        return _Read(rendering, display, drawn, source.maps, source.listed)
    # The maps and the finding's heat (levels and box) need only the stored maps and the geometry:
    # they are made here while the display rendering's JPEG is decoded on a second thread (both let go
    # of the interpreter).
    geometry = stored_geometry(source)
    decoding = picture_thread().submit(Rendering.from_stored, source, codes=())
    heat: FindingHeat | None = None
    try:
        maps, listed = readable_maps(source.cams)
        if picture != "image" and code in maps:
            heat = finding_heat(
                maps[code], geometry, display_shape(geometry.original_shape), floor=_floor(picture)
            )
    finally:
        display = decoding.result()
    if picture == "image":
        return _Read(display, display, None, maps, listed)
    if code not in maps:
        raise RenderingCorrupt("The stored maps of this result cannot be read.")  # listed, not readable
    rendering = Rendering(display=display.display, cams={code: maps[code]}, geometry=display.geometry)
    if heat is None or heat.levels.shape != rendering.shape:
        heat = rendering.heat_of(code, floor=_floor(picture))
    return _Read(rendering, display, heat, maps, listed)


def _floor(picture: Picture) -> int:
    """The heat levels a picture does not show (left at 0 when the heat is made): an overlay's
    transparent ones; a heat layer keeps every level (its transparent pixels keep their colour)."""
    return OVERLAY_FLOOR if picture == "overlay" else 0


def _paint(rendering: Rendering, picture: Picture, code: str, heat: FindingHeat | None) -> bytes:
    """The PNG of one picture of what :func:`_read` gave."""
    if picture == "image":
        return rendering.display_png()
    if picture == "overlay":
        return rendering.overlay_png(code, heat)
    return rendering.heat_layer_png(code, heat)


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What a picture request serves, made in its read's transaction: a PNG (drawn before, or stored
    before renderings were kept), or what :func:`_read` gave to paint it from.

    Attributes:
        png: The PNG to serve as it is.
        read: What the picture is painted from.
        source: Where ``read`` came from (a stored rendering is kept decoded for the next pictures).
        model: ``(name, version)`` of the model that made the maps.
        start: ``time.perf_counter()`` when reading began (the overlay stage's duration).
    """

    png: bytes | None = None
    read: _Read | None = None
    source: StoredRendering | _Decoded | None = None
    model: tuple[str, str] | None = None
    start: float = 0.0


_NO_HEATMAP = "This result has no heatmap for this finding; heatmaps are made for positive findings."
_NO_IMAGE = "This result has no display image; images are kept for imaging results."


def _preparer(
    *, picture: Picture, code: str, cached: bytes | None, decoded: _Decoded | None
) -> Callable[[PictureRows | None], _Prepared | None]:
    """What the read's transaction runs (on its thread) once the caller's ground is found: the PNG or
    what it is painted from, None when the result has no such picture; :class:`RenderingCorrupt` when
    the stored rendering or the finding's map cannot be read (audited ``failure``)."""

    def prepare(rows: PictureRows | None) -> _Prepared | None:
        if cached is not None:
            return _Prepared(png=cached)
        source: StoredRendering | _Decoded
        if decoded is not None:
            source, model, codes = decoded, decoded.model, decoded.listed
        else:
            if rows is None or rows.rendering is None:
                # Filed before renderings were kept: the overlay stored then is all there is.
                return None if rows is None or rows.overlay is None else _Prepared(png=rows.overlay)
            data = rows.rendering
            source = StoredRendering(display=data.display, cams=data.cams, geometry=data.geometry)
            model, codes = data.model, _kept_codes(data.cams)
        # Unreadable maps (codes None) are not a missing picture: drawing it fails, and says so.
        if picture != "image" and codes is not None and code not in codes:
            return None
        start = time.perf_counter()
        return _Prepared(read=_read(source, picture, code), source=source, model=model, start=start)

    return prepare


async def _picture(ctx: Context, actor: Actor, *, result_id: str, picture: Picture, code: str) -> bytes:
    cache, renderings = _caches(ctx)
    key = (result_id, picture, code)
    cached = cache.get(key)
    decoded = renderings.get(result_id) if cached is None else None
    # The ground, the stored rendering (unless this process keeps the picture or its decoded rendering),
    # what the picture is drawn from and the audit entry saying what became of it: one transaction.
    found = await db(
        ctx.record.results.read_picture,
        result_id=result_id,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action="results:read"),
        resource_type="Image" if picture == "image" else "Heatmap",
        load=cached is None and decoded is None,
        overlay_code=code if picture == "overlay" else None,
        prepare=_preparer(picture=picture, code=code, cached=cached, decoded=decoded),
        failures=(RenderingCorrupt,),
    )
    if found.outcome == FAILURE:
        logger.error(
            "stored rendering unreadable",
            extra={"event": "rendering_unreadable", "result_id": result_id, "picture": picture},
        )
        raise PictureUnreadable(str(found.error)) from found.error
    missing = (
        "No result has this id."
        if found.patient_id is None
        else _NO_IMAGE
        if picture == "image"
        else _NO_HEATMAP
    )
    prepared = served(actor, found, missing=missing)
    if prepared.png is not None:
        return prepared.png
    got, source = prepared.read, prepared.source
    if got is None or source is None:  # a _Prepared is made with a PNG or with both
        raise NotFound(missing)
    if isinstance(source, StoredRendering):
        renderings.put(
            result_id, _Decoded(rendering=got.display, maps=got.maps, listed=got.listed, model=prepared.model)
        )
    png = await ctx.workers.run(_paint, got.rendering, picture, code, got.heat)
    if picture != "image":
        name, version = prepared.model or ("unknown", "unknown")
        observe_stage("overlay", model=name, version=version, seconds=time.perf_counter() - prepared.start)
    cache.put(key, png)
    return png


def _kept_codes(cams: bytes) -> frozenset[str] | None:
    """The findings with a stored map (:attr:`StoredRendering.cams`), read from the npz's directory;
    None when the stored maps are not an archive that can be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(cams)) as maps:
            return frozenset(name.removesuffix(".npy") for name in maps.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


async def get_heatmap(*, ctx: Context, actor: Actor, result_id: str, code: str) -> bytes:
    """The PNG overlay of one finding of an imaging result (drawn when first asked for, then cached).

    Raises:
        NotFound: No such result, or no heatmap for this finding (heatmaps exist for positive findings).
        Forbidden: The patient belongs to another facility than the caller's token.
    """
    return await _picture(ctx, actor, result_id=result_id, picture="overlay", code=code)


async def get_heat_layer(*, ctx: Context, actor: Actor, result_id: str, code: str) -> bytes:
    """The transparent RGBA heat layer of one finding, pixel for pixel over :func:`get_result_image`.

    Raises:
        NotFound: No such result, or no heat layer for this finding (results filed before display
            renderings were kept have none).
        Forbidden: The patient belongs to another facility than the caller's token.
    """
    return await _picture(ctx, actor, result_id=result_id, picture="layer", code=code)


async def get_result_image(*, ctx: Context, actor: Actor, result_id: str) -> bytes:
    """The display rendering of an imaging result's radiograph (8-bit grayscale PNG, at most 1024 a side).

    Raises:
        NotFound: No such result, or it has no display image (a triage result, or filed before).
        Forbidden: The patient belongs to another facility than the caller's token.
    """
    return await _picture(ctx, actor, result_id=result_id, picture="image", code="")
