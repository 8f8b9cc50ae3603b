"""The pictures of an imaging result, drawn when they are looked at: display image, overlays, heat layers.

A result keeps its display rendering and the CAMs of its positive findings (:mod:`inference.analysis`);
the first request for a picture draws it on the worker pool and keeps the PNG in a bounded in-process
cache, so a reader flipping between findings is answered from memory. Results filed before renderings
were kept still answer their stored overlay PNGs. Every access is authorised like reading the result
(same permission and facility scope) and audited.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Final, Literal

from inference.analysis import Rendering, StoredRendering, observe_stage
from inference.record import NotFound
from inference.services._access import audit
from inference.services._context import Actor, Context, db
from inference.services._results import result_patient

Picture = Literal["image", "overlay", "layer"]

CACHE_BYTES: Final = 64 * 1024 * 1024
"""Memory the drawn PNGs of one process may hold (least recently used first out)."""


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


_CACHES: dict[int, PictureCache] = {}
_CACHES_LOCK = threading.Lock()


def _cache(ctx: Context) -> PictureCache:
    # One cache per record (per process in practice), made on first use: the Context stays as it is.
    with _CACHES_LOCK:
        return _CACHES.setdefault(id(ctx.record), PictureCache())


def _draw(stored: StoredRendering, picture: Picture, code: str) -> bytes:
    # Only what the picture shows is read back: the display image needs no CAM, a heatmap one.
    rendering = Rendering.from_stored(stored, codes=() if picture == "image" else (code,))
    if picture == "image":
        return rendering.display_png()
    if code not in rendering.cams:
        raise KeyError(code)
    return rendering.overlay_png(code) if picture == "overlay" else rendering.heat_layer_png(code)


_NO_HEATMAP = "This result has no heatmap for this finding; heatmaps are made for positive findings."


async def _picture(ctx: Context, actor: Actor, *, result_id: str, picture: Picture, code: str) -> bytes:
    patient_id, outcome = await result_patient(ctx, actor, action="results:read", result_id=result_id)
    png = await _lookup(ctx, result_id=result_id, picture=picture, code=code)
    await audit(
        ctx,
        actor,
        action="results:read",
        outcome=outcome if png is not None else "not_found",
        resource_type="Image" if picture == "image" else "Heatmap",
        resource_id=result_id,
        patient_id=patient_id,
    )
    if png is None:
        raise NotFound(
            "This result has no display image; images are kept for imaging results."
            if picture == "image"
            else _NO_HEATMAP
        )
    return png


async def _lookup(ctx: Context, *, result_id: str, picture: Picture, code: str) -> bytes | None:
    cache = _cache(ctx)
    key = (result_id, picture, code)
    cached = cache.get(key)
    if cached is not None:
        return cached
    data = await db(ctx.record.results.rendering, result_id=result_id)
    if data is None:
        # Filed before renderings were kept: the overlay stored then is all there is.
        return (
            await db(ctx.record.results.heatmap, result_id=result_id, code=code)
            if picture == "overlay"
            else None
        )
    stored = StoredRendering(display=data.display, cams=data.cams, geometry=data.geometry)
    start = time.perf_counter()
    try:
        png = await ctx.workers.run(_draw, stored, picture, code)
    except KeyError:
        return None
    if picture != "image":
        name, version = data.model or ("unknown", "unknown")
        observe_stage("overlay", model=name, version=version, seconds=time.perf_counter() - start)
    cache.put(key, png)
    return png


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
