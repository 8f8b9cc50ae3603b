"""Rasterising helpers for the phantoms: shapes in chest units drawn onto a small working grid.

Shapes are described in normalised chest coordinates ``(u, v)``: ``u`` runs from the patient's right
(image left, negative) to the patient's left (image right, positive) with the inner rib margins near
``u = +-1``; ``v`` runs downward, lung apices near ``v = -1`` and diaphragm domes near ``v = +0.45``.
A :class:`Canvas` maps those coordinates to working-grid pixels through one affine transform (scale,
small rotation, shift), so the whole anatomy moves together. Pillow's C rasteriser and blur keep each
shape well under a millisecond, which is what makes 2500 phantoms a minute possible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Points = np.ndarray  # float array [P, 2] of (u, v)


class Canvas:
    """An affine map from chest units to a working grid, with shape rasterisers.

    Args:
        shape: Working grid ``(rows, cols)``.
        centre: Pixel position ``(x, y)`` of the chest origin ``(u, v) = (0, 0)``.
        scale: Pixels per chest unit.
        angle: Rotation in radians (positive turns the chest clockwise on screen).
    """

    def __init__(self, shape: tuple[int, int], centre: tuple[float, float], scale: float, angle: float):
        self.shape = shape
        self.centre = centre
        self.scale = scale
        self._cos = math.cos(angle)
        self._sin = math.sin(angle)

    def to_pixels(self, pts: Points) -> np.ndarray:
        """Map ``[P, 2]`` chest-unit points to ``[P, 2]`` pixel ``(x, y)`` coordinates."""
        u = pts[:, 0]
        v = pts[:, 1]
        x = self.centre[0] + self.scale * (u * self._cos - v * self._sin)
        y = self.centre[1] + self.scale * (u * self._sin + v * self._cos)
        return np.stack([x, y], axis=1)

    def px(self, length: float) -> float:
        """A length in chest units, in pixels."""
        return length * self.scale

    def _new(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        img = Image.new("L", (self.shape[1], self.shape[0]), 0)
        return img, ImageDraw.Draw(img)

    @staticmethod
    def _finish(img: Image.Image, blur: float) -> np.ndarray:
        if blur > 0.6:  # below that the shapes are already as soft as the upsampling makes them
            img = img.filter(_blur_filter(blur))
        return np.asarray(img, dtype=np.float32) * np.float32(1.0 / 255.0)

    def _xy(self, pts: Points | Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        # Plain Python: shapes have tens of points, where numpy's per-call overhead dominates.
        seq = pts.tolist() if isinstance(pts, np.ndarray) else pts
        cx, cy, s, c, n = self.centre[0], self.centre[1], self.scale, self._cos, self._sin
        return [(cx + s * (u * c - v * n), cy + s * (u * n + v * c)) for u, v in seq]

    def paint(self, items: Sequence[tuple], blur: float = 0.0) -> np.ndarray:
        """Draw shapes in order onto one 8-bit layer and return it as a float map in [0, 1].

        Args:
            items: ``("poly", points, value)`` fills a polygon; ``("line", points, value, width)`` draws a
                polyline ``width`` chest units wide. Values are 0..255; later shapes overwrite earlier
                ones (a value of 0 cuts a hole).
            blur: Gaussian sigma in pixels applied once after drawing.
        """
        img, draw = self._new()
        for item in items:
            if item[0] == "poly":
                draw.polygon(self._xy(item[1]), fill=int(item[2]))
            else:
                w = max(1, round(self.px(item[3])))
                draw.line(self._xy(item[1]), fill=int(item[2]), width=w, joint="curve")
        return self._finish(img, blur)

    def polygon(self, pts: Points, blur: float = 0.0) -> np.ndarray:
        """One filled polygon as a float map in [0, 1]."""
        return self.paint([("poly", pts, 255)], blur)


def ellipse(cu: float, cv: float, a: float, b: float, angle: float = 0.0, n: int = 40) -> Points:
    """Points of an ellipse centred at ``(cu, cv)`` with semi-axes ``a``, ``b`` rotated by ``angle``."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x = a * np.cos(t)
    y = b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cu + x * c - y * s, cv + x * s + y * c], axis=1)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise: a coarse random grid upsampled bicubically to ``shape``."""
    rows = max(2, round(cells * shape[0] / max(shape)))
    cols = max(2, round(cells * shape[1] / max(shape)))
    coarse = rng.standard_normal((rows, cols), dtype=np.float32)
    img = Image.fromarray(coarse, mode="F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def resize(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float map to ``(rows, cols)``."""
    img = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.float32)


def mask_to(field: np.ndarray, shape: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """Resize a soft working-grid map to ``(rows, cols)`` and threshold it into a boolean mask.

    Only the bounding box of the non-zero part is resized: findings are small, full frames are not.
    """
    out = np.zeros(shape, dtype=bool)
    ys, xs = np.nonzero(field.max(axis=1) > 0)[0], np.nonzero(field.max(axis=0) > 0)[0]
    if ys.size == 0:
        return out
    h, w = field.shape
    fy, fx = shape[0] / h, shape[1] / w
    y0, y1 = max(0, int(ys[0]) - 1), min(h, int(ys[-1]) + 2)
    x0, x1 = max(0, int(xs[0]) - 1), min(w, int(xs[-1]) + 2)
    # Full-resolution box covering the crop; box= keeps the sub-pixel alignment of a full resize.
    r0, r1 = int(y0 * fy), min(shape[0], int(np.ceil(y1 * fy)))
    c0, c1 = int(x0 * fx), min(shape[1], int(np.ceil(x1 * fx)))
    img = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    box = (c0 / fx, r0 / fy, c1 / fx, r1 / fy)
    crop = img.resize((c1 - c0, r1 - r0), Image.Resampling.BILINEAR, box=box)
    out[r0:r1, c0:c1] = np.asarray(crop, dtype=np.float32) > threshold
    return out


def vessel_tree(
    rng: np.random.Generator,
    root: tuple[float, float],
    directions: Sequence[float],
    *,
    length: float,
    width: float,
    generations: int = 4,
) -> list[tuple]:
    """Branching vessel polylines radiating from a hilum, thinner and fainter at each generation.

    Plain-Python arithmetic on purpose: the segments are a handful of points each, where numpy's
    per-call overhead would dominate.

    Args:
        rng: Random source.
        root: Hilum position in chest units.
        directions: Initial directions of the main trunks, radians (0 = +u, pi/2 = +v, downward).
        length: Length of a trunk segment in chest units; each generation is ~0.75 as long.
        width: Width of a trunk in chest units.
        generations: Number of branching levels.

    Returns:
        ``("line", points, value, width)`` items for :meth:`Canvas.paint`.
    """
    out: list[tuple] = []
    n_seg = sum(len(directions) * 2**g for g in range(generations))
    jitter = iter(rng.normal(0.0, 1.0, size=4 * n_seg).tolist())
    stack = [(root[0], root[1], float(d), length, width, 0) for d in directions]
    while stack:
        u, v, d, seg, w, gen = stack.pop()
        bend = 0.12 * next(jitter)
        pts = [(u, v)]
        for k in range(1, 4):  # a slightly wavy segment: vessels are not ruler-straight
            a = d + bend * k / 3
            u += math.cos(a) * seg / 3
            v += math.sin(a) * seg / 3
            pts.append((u, v))
        out.append(("line", pts, int(255 * (1.0 - 0.2 * gen)), w))
        if gen + 1 < generations:
            spread = 0.35 + 0.12 * abs(next(jitter))
            for sign in (-1.0, 1.0):
                shrink = 0.75 + 0.05 * next(jitter)
                stack.append((u, v, d + sign * spread, seg * shrink, w * 0.68, gen + 1))
    return out


def lowpass(field: np.ndarray, factor: int) -> np.ndarray:
    """A wide blur done cheaply: box-reduce by ``factor`` and resize back bilinearly."""
    img = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    small = img.reduce(factor)
    return np.asarray(small.resize(img.size, Image.Resampling.BILINEAR), dtype=np.float32)


def blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a [0, 1] map through Pillow's 8-bit blur (quantisation hides under the noise)."""
    img = Image.fromarray(np.clip(field * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return np.asarray(img.filter(_blur_filter(sigma)), dtype=np.float32) * np.float32(1.0 / 255.0)


def _blur_filter(sigma: float) -> ImageFilter.Filter:
    # One box pass (width chosen for the same standard deviation) costs a third of Pillow's Gaussian;
    # under the noise and the model's downsampling the difference does not show.
    return ImageFilter.BoxBlur(max(0.5, sigma * 1.7))


def develop(
    rng: np.random.Generator,
    attenuation: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Turn a working-grid attenuation map into the final image: exposure, upsampling and quantum noise.

    Args:
        rng: Random source (exposure, tube-heel gradient, noise).
        attenuation: Working-grid map, roughly 0 (air) to 0.8 (bone over mediastinum).
        shape: Final ``(rows, cols)``.

    Returns:
        float32 image in [0, 1], bright where attenuation is high (the MONOCHROME2 sense).
    """
    contrast = np.float32(rng.uniform(1.0, 1.15))
    offset = np.float32(rng.uniform(0.0, 0.04))
    gamma = float(rng.uniform(0.85, 1.15))
    small = np.clip(attenuation * contrast + offset, 0.0, 1.0)
    if abs(gamma - 1.0) > 0.02:
        small = small**gamma
    # A gentle vertical gradient: the anode heel effect and uneven exposure across the detector.
    tilt = np.float32(rng.uniform(-0.03, 0.03))
    small = small + tilt * np.linspace(-1.0, 1.0, small.shape[0], dtype=np.float32)[:, None]
    img = Image.fromarray(np.ascontiguousarray(small, dtype=np.float32), mode="F")
    image = np.array(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)
    # Quantum noise grows where fewer photons reach the detector, i.e. under dense structures. The sum
    # of two uniform bytes is bell-shaped enough and three times cheaper than Gaussian draws.
    sigma = np.float32(rng.uniform(0.010, 0.022) / 104.5)  # 104.5 = std of the sum of two bytes
    n = shape[0] * shape[1]
    raw = np.frombuffer(rng.bytes(2 * n), dtype=np.uint8)
    noise = raw[:n].astype(np.float32)
    noise += raw[n:]
    noise -= np.float32(255.0)
    image += noise.reshape(shape) * (sigma * (np.float32(0.5) + image))
    np.clip(image, 0.0, 1.0, out=image)
    return image
