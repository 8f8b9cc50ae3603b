"""Class activation maps → heatmaps in original image geometry, and the box around the hottest region."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ToOriginal(Protocol):
    """Maps a map covering the model input to original pixel geometry (``inference.preprocess.Geometry``)."""

    def to_original(self, model_map: np.ndarray) -> np.ndarray: ...


class Letterbox(ToOriginal, Protocol):
    """A letterbox geometry whose placement is known, so maps can be sampled at any output size."""

    @property
    def original_shape(self) -> tuple[int, int]: ...

    @property
    def content_shape(self) -> tuple[int, int]: ...

    @property
    def pad_top(self) -> int: ...

    @property
    def pad_left(self) -> int: ...

    @property
    def input_size(self) -> int: ...


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in original pixel coordinates, half-open like a numpy slice.

    Pixel ``(row, column)`` is inside when ``y0 <= row < y1`` and ``x0 <= column < x1``.
    """

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Columns covered."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Rows covered."""
        return self.y1 - self.y0

    def contains(self, row: float, column: float) -> bool:
        """Whether a point (row, column) lies inside the box."""
        return self.y0 <= row < self.y1 and self.x0 <= column < self.x1

    def rescaled(self, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> Box:
        """The same region in an image of ``to_shape`` (rows, columns) covering the same extent.

        Every pixel of ``to_shape`` that overlaps the box is inside the result, so a box found on a
        downscaled heatmap still encloses its region once scaled back to original pixels.
        """
        sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
        eps = 1e-9  # exact multiples must not round outwards through float error
        return Box(
            x0=max(0, math.floor(self.x0 * sx + eps)),
            y0=max(0, math.floor(self.y0 * sy + eps)),
            x1=min(to_shape[1], math.ceil(self.x1 * sx - eps)),
            y1=min(to_shape[0], math.ceil(self.y1 * sy - eps)),
        )


def _sample(cam: np.ndarray, geometry: Letterbox, shape: tuple[int, int]) -> np.ndarray:
    """Sample a map covering the model input at the pixel centres of a ``shape`` grid over the image.

    The grid covers the same extent as the original image (padding cropped), so each output pixel is the
    centre of a block of original pixels: what :meth:`Geometry.to_original` gives, at another size.
    """
    rows, columns = shape
    h, w = cam.shape
    size = geometry.input_size
    content_rows, content_columns = geometry.content_shape
    y = (geometry.pad_top + (np.arange(rows) + 0.5) * (content_rows / rows)) * (h / size) - 0.5
    x = (geometry.pad_left + (np.arange(columns) + 0.5) * (content_columns / columns)) * (w / size) - 0.5
    y = np.clip(y, 0.0, h - 1)
    x = np.clip(x, 0.0, w - 1)
    y0, x0 = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (y - y0).astype(np.float32)[:, None]
    wx = (x - x0).astype(np.float32)[None, :]
    along_y = cam[y0] * (1 - wy) + cam[y1] * wy  # the small map first: (rows, w), then columns
    return np.asarray(along_y[:, x0] * (1 - wx) + along_y[:, x1] * wx, dtype=np.float32)


def cam_to_heatmap(
    cam: np.ndarray, geometry: ToOriginal | Letterbox, *, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Turn one finding's class activation map into a heatmap over the original image.

    Negative evidence is dropped (ReLU), the map is mapped through the letterbox geometry (padding
    cropped, bilinear) and normalised by its maximum.

    Args:
        cam: ``[h, w]`` map in logit units covering the whole model input.
        geometry: the letterbox geometry of the image (:class:`inference.preprocess.Geometry`).
        shape: ``(rows, columns)`` of the heatmap when it should cover the original image at another
            resolution (e.g. the display size of an overlay: a 2048² heatmap costs 16 times a 512² one);
            the original shape when None. Needs a geometry with its placement (:class:`Letterbox`).

    Returns:
        float32 ``[rows, columns]`` in [0, 1]; all zeros when the map has no positive evidence.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"A class activation map is 2-D [h, w]; got shape {cam.shape}.")
    positive = np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    if shape is None:
        heat = np.asarray(geometry.to_original(positive), dtype=np.float32)
    else:
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"A heatmap shape must be positive; got {shape}.")
        if not hasattr(geometry, "content_shape"):
            raise TypeError(
                "A heatmap at another size needs a letterbox geometry (inference.preprocess.Geometry)."
            )
        heat = _sample(positive, geometry, (int(shape[0]), int(shape[1])))  # type: ignore[arg-type]
    peak = float(heat.max(initial=0.0))
    if peak <= 0.0:
        return np.zeros_like(heat, dtype=np.float32)
    normalised: np.ndarray = np.clip(heat / peak, 0.0, 1.0).astype(np.float32)
    return normalised


_BLOCK = 64
"""Output columns sampled at a time by :func:`cam_to_levels`: 64 x 1024 float32 samples (256 KB, two
such buffers) stay in the core's cache."""


_BOUND_MARGIN = 1e-5
"""Relative slack on a block's bound: a sample is two float32 products added, each rounded, so it may
exceed the larger of the two values it interpolates by a few units in the last place (below 1e-6)."""


def cam_to_levels(
    cam: np.ndarray, geometry: Letterbox, shape: tuple[int, int], *, floor: int = 0
) -> np.ndarray:
    """The 8-bit levels ``round(255 * cam_to_heatmap(cam, geometry, shape=shape))`` of one finding's heat.

    What an overlay or heat layer draws (heat level -> colour and opacity), equal element for element
    to quantising :func:`cam_to_heatmap` as the overlay does (same float32 samples, same normalisation,
    same rounding), without its full-size float maps: the samples are made a few columns at a time, in
    cache, once to find the peak and again to quantise them (cheaper than writing and reading back
    4 MB). Along the columns each output column interpolates two rows of the map already sampled along
    the rows, so a block is two outer products added, not a gather; no sample of a block exceeds the
    larger of those two rows' maxima, so the peak is found in the blocks that can hold it (hottest
    bound first) and, with ``floor``, blocks that cannot reach above it are not quantised.

    Args:
        cam: ``[h, w]`` map in logit units covering the whole model input.
        geometry: the letterbox geometry of the image.
        shape: ``(rows, columns)`` of the levels (e.g. the display rendering's).
        floor: Levels up to it may be left at 0 (a picture that shows none of them: an overlay leaves
            the image untouched where the heat is transparent). Every level above it is exact.

    Returns:
        uint8 ``[rows, columns]`` (a column-major view: the samples are made column by column); all
        zeros when the map has no positive evidence.
    """
    source = np.asarray(cam, dtype=np.float32)
    if source.ndim != 2:
        raise ValueError(f"A class activation map is 2-D [h, w]; got shape {source.shape}.")
    rows, columns = int(shape[0]), int(shape[1])
    if rows < 1 or columns < 1:
        raise ValueError(f"A heatmap shape must be positive; got {shape}.")
    positive = np.maximum(np.nan_to_num(source, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    levels_by_column = np.zeros((columns, rows), dtype=np.uint8)
    if float(positive.max(initial=0.0)) <= 0.0:
        return levels_by_column.T  # every sample is 0: no heat
    h, w = positive.shape
    size = geometry.input_size
    content_rows, content_columns = geometry.content_shape
    (y0, y1, wy), _row_bands = _grid_axis(rows, geometry.pad_top, content_rows, size, h)
    (x0, x1, wx), (band_starts, band_ends) = _grid_axis(columns, geometry.pad_left, content_columns, size, w)
    wyc = wy[:, None]
    # Sampled along the rows first (the small map, as _sample does): row j of along_y is map column j.
    along_y = np.ascontiguousarray((positive[y0] * (1 - wyc) + positive[y1] * wyc).T)
    wxc = wx[:, None]
    keep = 1 - wxc
    # Blocks of output columns that interpolate the same two sampled map columns (a band, or a part of
    # a wide one): a block's samples are two outer products added, no gather.
    blocks = [
        (start, min(start + _BLOCK, int(end)), int(x0[start]), int(x1[start]))
        for band_start, end in zip(band_starts, band_ends, strict=True)
        for start in range(int(band_start), int(end), _BLOCK)
    ]
    scratch = np.empty((_BLOCK, rows), dtype=np.float32)
    second = np.empty((_BLOCK, rows), dtype=np.float32)

    def samples(start: int, stop: int, lower: int, upper: int) -> np.ndarray:
        # along_y[:, x0] * (1 - wx) + along_y[:, x1] * wx of _sample, for output columns start:stop.
        block, other = scratch[: stop - start], second[: stop - start]
        np.multiply(keep[start:stop], along_y[lower], out=block)
        np.multiply(wxc[start:stop], along_y[upper], out=other)
        np.add(block, other, out=block)
        return block

    column_peaks = along_y.max(axis=1)
    bounds = [max(float(column_peaks[lower]), float(column_peaks[upper])) for *_, lower, upper in blocks]
    peak = 0.0
    for i in sorted(range(len(blocks)), key=bounds.__getitem__, reverse=True):
        if bounds[i] * (1 + _BOUND_MARGIN) < peak:
            break  # this block, and every one after it, stays below the peak found
        peak = max(peak, float(samples(*blocks[i]).max()))
    if not math.isfinite(peak):
        # Overflowed samples: the general path's NaN and infinity handling.
        heat = cam_to_heatmap(source, geometry, shape=(rows, columns))
        scaled = np.multiply(heat, np.float32(255.0), dtype=np.float32)
        np.fmax(scaled, np.float32(0.0), out=scaled)
        np.fmin(scaled, np.float32(255.0), out=scaled)
        levels: np.ndarray = np.rint(scaled).astype(np.uint8)
        return levels
    if peak <= 0.0:
        return levels_by_column.T
    # Finite samples in [0, peak]: heat / peak lies in [0, 1] (division rounds monotonically), so the
    # clip of cam_to_heatmap and the fmax/fmin of the overlay's quantisation change nothing.
    divisor, scale = np.float32(peak), np.float32(255.0)
    for (start, stop, lower, upper), bound in zip(blocks, bounds, strict=True):
        if bound * (1 + _BOUND_MARGIN) / peak * 255.0 < floor + 0.25:
            continue  # every level of this block rounds to at most ``floor``: left at 0
        quantised = samples(start, stop, lower, upper)
        np.divide(quantised, divisor, out=quantised)
        np.multiply(quantised, scale, out=quantised)
        np.rint(quantised, out=quantised)
        levels_by_column[start:stop] = quantised
    return levels_by_column.T


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``[start, end)`` column runs of True, as arrays ``(row, start, end)`` sorted by row then start."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return starts[0], starts[1], ends[1]


def _touching_runs(
    row: np.ndarray, start: np.ndarray, end: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` of runs in consecutive rows (``row[i] + 1 = row[j]``) that touch.

    8-connectivity: runs touch when their column ranges overlap or meet diagonally, i.e.
    ``start[i] <= end[j]`` and ``end[i] >= start[j]`` (``end`` exclusive). Within a row the runs are
    disjoint and sorted, so the runs of row ``r`` touching a run of row ``r + 1`` are one contiguous
    range, found for every run at once by binary searches on ``(row, column)`` keys.
    """
    stride = width + 2
    above = (row - 1) * stride
    # First run of the row above whose end reaches this run's start, and one past the last one that
    # starts at or before this run's end.
    lo = np.searchsorted(row * stride + end, above + start, side="left")
    hi = np.searchsorted(row * stride + start, above + end, side="right")
    counts = np.maximum(hi - lo, 0)
    j = np.repeat(np.arange(row.size), counts)
    offsets = np.arange(j.size) - np.repeat(np.cumsum(counts) - counts, counts)
    i = np.repeat(lo, counts) + offsets
    return i, j


def _component(count: int, i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """Mask of the runs connected to run ``seed`` through the edges ``(i, j)``.

    Min-label propagation with pointer jumping: every run ends labelled with the smallest run index of
    its component; a label only ever points to a smaller one, so the loop ends.
    """
    labels = np.arange(count)
    while True:
        low = np.minimum(labels[i], labels[j])
        updated = labels.copy()
        np.minimum.at(updated, i, low)
        np.minimum.at(updated, j, low)
        updated = updated[updated]
        if np.array_equal(updated, labels):
            break
        labels = updated
    region: np.ndarray = labels == labels[seed]
    return region


def hottest_box(heatmap: np.ndarray, *, level: float = 0.5) -> Box | None:
    """Bounding box of the connected region around the heatmap's maximum where heat ≥ ``level`` · max.

    Connectivity is 8-neighbour. Labelling works on row runs, so a smooth heatmap of a full-size
    radiograph costs a few thousand runs, not millions of pixels.

    Args:
        heatmap: ``[rows, columns]`` heat (e.g. from :func:`cam_to_heatmap`).
        level: fraction of the maximum that delimits the region, in (0, 1].

    Returns:
        The box in original pixel coordinates, or ``None`` when the map holds no heat.
    """
    if not 0.0 < level <= 1.0:
        raise ValueError(f"level must be in (0, 1]; got {level}.")
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)
    if heat.ndim != 2:
        raise ValueError(f"A heatmap is 2-D [rows, columns]; got shape {heat.shape}.")
    peak = float(heat.max(initial=0.0))
    if peak <= 0.0:
        return None
    seed_row, seed_col = (int(v) for v in np.unravel_index(int(np.argmax(heat)), heat.shape))
    row, start, end = _runs(heat >= level * peak)
    # The seed's run: in the seed row, the last run starting at or before the seed column.
    in_row = np.flatnonzero(row == seed_row)
    seed = int(in_row[np.searchsorted(start[in_row], seed_col, side="right") - 1])
    i, j = _touching_runs(row, start, end, heat.shape[1])
    region = _component(row.size, i, j, seed)
    y0, y1 = int(row[region].min()), int(row[region].max())
    x0, x1 = int(start[region].min()), int(end[region].max())
    return Box(x0=x0, y0=y0, x1=x1, y1=y1 + 1)


def _axis(
    count: int, pad: int, content: int, size: int, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper map indices and the upper weight of ``count`` pixel centres along one axis.

    The same arithmetic as :func:`_sample`, so values computed from it match that function exactly.
    """
    coord = (pad + (np.arange(count) + 0.5) * (content / count)) * (length / size) - 0.5
    coord = np.clip(coord, 0.0, length - 1)
    lower = np.floor(coord).astype(np.intp)
    upper = np.minimum(lower + 1, length - 1)
    return lower, upper, (coord - lower).astype(np.float32)


def _window(
    positive: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    columns: tuple[np.ndarray, np.ndarray, np.ndarray],
    row_index: slice | np.ndarray,
    column_index: slice | np.ndarray,
) -> np.ndarray:
    """Heat (unnormalised) of the output pixels ``row_index`` x ``column_index`` (slices or index arrays).

    Element by element the same arithmetic as :func:`_sample`, so every value equals that function's.
    """
    y0, y1, wy = (a[row_index] for a in rows)
    x0, x1, wx = (a[column_index] for a in columns)
    wyc, wxc = wy[:, None], wx[None, :]
    along_y = positive[y0] * (1 - wyc) + positive[y1] * wyc
    return np.asarray(along_y[:, x0] * (1 - wxc) + along_y[:, x1] * wxc, dtype=np.float32)


def _bands(lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[start, end)`` of the runs of output pixels along one axis that share their lower map index.

    Within a band the pixels interpolate the same two map nodes with a weight that grows with the pixel
    index (:func:`_axis` is monotonic), so along that axis a sample is linear in the weight.
    """
    changes = np.flatnonzero(lower[1:] != lower[:-1]) + 1
    return np.concatenate(([0], changes)), np.concatenate((changes, [lower.size]))


@functools.lru_cache(maxsize=64)
def _grid_axis(
    count: int, pad: int, content: int, size: int, length: int
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """:func:`_axis` and its :func:`_bands`, read-only: the findings of one study share their grid."""
    axis = _axis(count, pad, content, size, length)
    bands = _bands(axis[0])
    for array in (*axis, *bands):
        array.flags.writeable = False
    return axis, bands


def _flat_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`_runs` gives, from one pass over the flattened mask (about a third of its cost)."""
    rows, columns = mask.shape
    stride = columns + 2
    padded = np.zeros((rows, stride), dtype=np.bool_)
    padded[:, 1:-1] = mask
    # The False columns at both ends of every row keep runs from joining across rows, so the changes of
    # the flattened rows alternate: a run's start, its end, the next run's start... (Comparing booleans
    # finds them in a third of the time of differencing them as integers.)
    flat = padded.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    row, column = np.divmod(changes, stride)
    return row[0::2], column[0::2] - 1, column[1::2] - 1


def _region(mask: np.ndarray, seed: tuple[int, int]) -> tuple[int, int, int, int]:
    """Half-open ``(x0, y0, x1, y1)`` around the 8-connected True pixels of ``mask`` connected to ``seed``.

    The labelling of :func:`hottest_box`, on a mask already made.
    """
    row, start, end = _flat_runs(mask)
    # Each run touching the next one (so no two share a row: runs of a row are apart) in consecutive rows
    # is a single chain, as a smooth map gives: it is the region, no labelling needed.
    if row[-1] - row[0] == row.size - 1 and bool(np.all((start[1:] <= end[:-1]) & (end[1:] >= start[:-1]))):
        return int(start.min()), int(row[0]), int(end.max()), int(row[-1]) + 1
    in_row = np.flatnonzero(row == seed[0])
    run = int(in_row[np.searchsorted(start[in_row], seed[1], side="right") - 1])
    i, j = _touching_runs(row, start, end, mask.shape[1])
    region = _component(row.size, i, j, run)
    rows = row[region]
    return int(start[region].min()), int(rows.min()), int(end[region].max()), int(rows.max()) + 1


def cam_box(
    cam: np.ndarray, geometry: Letterbox, shape: tuple[int, int], *, level: float = 0.5
) -> Box | None:
    """The hottest-region box of a class activation map, in the pixels of a ``shape`` grid over the image.

    Equal to ``hottest_box(cam_to_heatmap(cam, geometry, shape=shape), level=level)``, without sampling
    the whole grid. The grid splits into cells: the output pixels that interpolate the same four map
    nodes. Inside a cell a sample is bilinear in the two interpolation weights, which grow with the pixel
    indices, so the cell's largest sample is one of its four corner pixels. Sampling only those corners
    (a few hundred samples) bounds every cell; then only the cells that may hold the peak are sampled to
    find it, and only the bounding box of the 8-connected hot cells around it to find the region.

    Args:
        cam: ``[h, w]`` map in logit units covering the whole model input.
        geometry: the letterbox geometry of the image.
        shape: ``(rows, columns)`` of the grid the box is measured in (e.g. the display rendering's).
        level: fraction of the maximum that delimits the region, in (0, 1].

    Returns:
        The box in ``shape`` pixel coordinates, or ``None`` when the map holds no positive evidence.
    """
    if not 0.0 < level <= 1.0:
        raise ValueError(f"level must be in (0, 1]; got {level}.")
    source = np.asarray(cam, dtype=np.float32)
    if source.ndim != 2:
        raise ValueError(f"A class activation map is 2-D [h, w]; got shape {source.shape}.")
    positive = np.maximum(np.nan_to_num(source, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    if float(positive.max(initial=0.0)) <= 0.0:
        return None
    h, w = positive.shape
    size = geometry.input_size
    content_rows, content_columns = geometry.content_shape
    rows, (row_starts, row_ends) = _grid_axis(int(shape[0]), geometry.pad_top, content_rows, size, h)
    columns, (column_starts, column_ends) = _grid_axis(
        int(shape[1]), geometry.pad_left, content_columns, size, w
    )
    # Samples at the first and last pixel of every band (rows of the first pixels, then of the last ones;
    # columns alike), and per cell (band row x band column) the largest of its four corners. Float
    # rounding can put an inner sample a few ulps above its cell's corners: the relative margin (1e-4,
    # far above float32 rounding) keeps every comparison with them on the safe side, and the region
    # itself is still labelled on exact samples.
    extremes = _window(
        positive,
        rows,
        columns,
        np.concatenate((row_starts, row_ends - 1)),
        np.concatenate((column_starts, column_ends - 1)),
    )
    along_rows = np.maximum(extremes[: row_starts.size], extremes[row_starts.size :])
    corners = np.maximum(along_rows[:, : column_starts.size], along_rows[:, column_starts.size :])
    margin = 1.0 - 1e-4
    corner_peak = float(corners.max(initial=0.0))
    if corner_peak <= 0.0:
        # No corner is warm (the evidence lies in the padding, say): no shortcut, sample the whole grid.
        return _box_in(positive, rows, columns, (0, int(shape[0])), (0, int(shape[1])), level)
    # The peak lies in a cell whose corner maximum reaches the corners' peak (less the margin): the first
    # maximum in raster order of the box around those cells is the first maximum of the whole grid.
    band_rows, band_columns = np.nonzero(corners >= corner_peak * margin)
    peak_window = (
        slice(int(row_starts[band_rows.min()]), int(row_ends[band_rows.max()])),
        slice(int(column_starts[band_columns.min()]), int(column_ends[band_columns.max()])),
    )
    near = _window(positive, rows, columns, *peak_window)
    peak, at = _first_peak(near)  # at least corner_peak: those corners are in the window
    peak_row, peak_column = at[0] + peak_window[0].start, at[1] + peak_window[1].start
    # Every pixel of the region is in a cell whose corners reach level * peak (less the margin), and two
    # 8-adjacent pixels are in the same cell or in 8-adjacent cells (bands are consecutive), so the region
    # lies within the 8-connected hot cells around the peak's cell: the box around them holds it whole.
    # The box also holds the grid's first maximum (in the peak's cell), which is then its own first
    # maximum, so the labelling inside it starts from the same pixel and finds the same region.
    hot = corners >= level * peak * margin
    seed = (
        int(np.searchsorted(row_starts, peak_row, side="right")) - 1,
        int(np.searchsorted(column_starts, peak_column, side="right")) - 1,
    )
    hot[seed] = True  # it is, unless rounding hides it
    left, top, right, bottom = _region(hot, seed)
    return _box_in(
        positive,
        rows,
        columns,
        (int(row_starts[top]), int(row_ends[bottom - 1])),
        (int(column_starts[left]), int(column_ends[right - 1])),
        level,
    )


def _first_peak(heat: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The maximum of finite samples and the ``(row, column)`` of its first occurrence in raster order.

    What ``heat.max()`` and ``np.argmax(heat)`` give; the position is found among the booleans of
    ``heat == peak``, several times cheaper than a float ``argmax`` over a large window.
    """
    peak = heat.max()
    at = np.unravel_index(int(np.argmax(heat == peak)), heat.shape)
    return float(peak), (int(at[0]), int(at[1]))


def _box_in(
    positive: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    columns: tuple[np.ndarray, np.ndarray, np.ndarray],
    row_range: tuple[int, int],
    column_range: tuple[int, int],
    level: float,
) -> Box | None:
    """:func:`hottest_box` of the pixels ``row_range`` x ``column_range`` (half-open), in grid pixels."""
    heat = _window(positive, rows, columns, slice(*row_range), slice(*column_range))
    if heat.size == 0:
        return None
    peak, seed = _first_peak(heat)
    if peak <= 0.0:
        return None
    # hottest_box of the normalised window: its maximum is 1, so its threshold is ``level`` itself (the
    # samples are finite and within [0, peak], so its NaN and clip steps change nothing). Its first
    # maximum is the window's: a sample below the peak divides to less than 1 (float32 division is
    # monotonic and the float just below the peak over the peak rounds below 1).
    normalised = heat / np.float32(peak)
    x0, y0, x1, y1 = _region(normalised >= level, seed)
    top, left = row_range[0], column_range[0]
    return Box(x0=x0 + left, y0=y0 + top, x1=x1 + left, y1=y1 + top)
