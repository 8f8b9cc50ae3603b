"""Acquisition variation: what differs between two radiographs of the same chest on different days.

A phantom from :func:`training.data.generate_phantom` is a well-centred, fully exposed film. Real
acquisitions vary in ways that say nothing about disease: exposure and processing (brightness, contrast,
gamma), quantum noise, collimation (unexposed, bright borders), lead side markers in a corner, and
positioning (the patient a little rotated, off-centre, nearer or farther from the detector). A model and
an OOD guard that only ever saw perfect films would treat such ordinary variation as unknown (the guard
would refuse it) or be thrown off by it. :func:`vary_acquisition` draws one such acquisition on top of a
phantom, moving the finding masks with the anatomy, so that the training data spans it.

It is kept out of the phantom generator on purpose: ``generate_phantom`` stays a pure function of its
random stream (the seed studies are built from it), and the variation draws from a stream of its own.
The amplitudes are bounded so the lung fields stay on the film: a collimator edge never reaches the
lungs and a marker sits in a corner, outside the thorax; the refusal set's artefacts (a metal plate over
a third of the film, burnt-out halves, severe noise, grid lines) stay far beyond them.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from training.data._phantom import Phantom

# Largest collimated share of each side: top, bottom, left, right. The lung apices sit about 11% below
# the top edge, the costophrenic angles about 30% above the bottom one, the lateral walls about 9% in
# from the sides (training.data._phantom geometry): the collimator stops short of all of them.
_COLLIMATION_MAX = (0.06, 0.12, 0.05, 0.05)


def vary_acquisition(rng: np.random.Generator, phantom: Phantom, *, strength: float = 1.0) -> Phantom:
    """A new phantom: the same chest and findings as acquired with other settings and positioning.

    Args:
        rng: Random source for the variation only (the phantom's own stream is not touched).
        phantom: A frontal or lateral phantom; its masks are moved with the image.
        strength: Scales every amplitude; 0 returns an equal copy of the image.

    Returns:
        A :class:`Phantom` with the varied image and masks; labels, view and CTR unchanged.
    """
    image = phantom.image.astype(np.float32, copy=True)
    masks = dict(phantom.masks)
    if strength <= 0:
        return Phantom(image, masks, dict(phantom.findings), phantom.view, phantom.ctr, dict(phantom.anatomy))
    rows, cols = image.shape

    # Positioning: rotation, magnification and off-centring of the whole film, masks alike.
    if rng.random() < 0.7:
        angle = rng.uniform(-4.0, 4.0) * strength
        zoom = 1.0 + rng.uniform(-0.05, 0.08) * strength
        shift = (rng.uniform(-0.04, 0.04) * cols * strength, rng.uniform(-0.03, 0.03) * rows * strength)
        image = _affine(image, angle, zoom, shift, resample=Image.Resampling.BILINEAR)
        masks = {
            name: (_affine(m.astype(np.float32), angle, zoom, shift, resample=Image.Resampling.NEAREST) > 0.5)
            if m.any()
            else m
            for name, m in masks.items()
        }

    # Exposure and processing: gamma, then contrast and brightness around the mid-grey.
    gamma = math.exp(rng.uniform(-0.3, 0.3) * strength)
    contrast = 1.0 + rng.uniform(-0.2, 0.2) * strength
    brightness = rng.uniform(-0.06, 0.06) * strength
    image = np.clip(image, 0.0, 1.0) ** np.float32(gamma)
    image = (image - np.float32(0.5)) * np.float32(contrast) + np.float32(0.5 + brightness)

    # Quantum noise: a second, stronger noise layer on some films (low dose, large patients).
    if rng.random() < 0.5:
        sigma = np.float32(rng.uniform(0.005, 0.03) * strength)
        image = image + sigma * rng.standard_normal((rows, cols), dtype=np.float32)

    # Collimation: bright unexposed bands on some sides, edges slightly soft.
    if rng.random() < 0.6:
        top, bottom, left, right = (
            int(round(rng.uniform(0.0, share) * strength * (rows if i < 2 else cols)))
            if rng.random() < 0.6
            else 0
            for i, share in enumerate(_COLLIMATION_MAX)
        )
        level = np.float32(rng.uniform(0.85, 1.0))
        image = np.clip(image, 0.0, 1.0)
        if top:
            image[:top] = level
        if bottom:
            image[rows - bottom :] = level
        if left:
            image[:, :left] = level
        if right:
            image[:, cols - right :] = level
        for name, m in masks.items():
            if m.any():
                m = m.copy()
                m[:top] = False
                m[rows - bottom :] = False
                m[:, :left] = False
                m[:, cols - right :] = False
                masks[name] = m

    # A lead side marker ("L" or "R") in an upper corner, outside the thorax.
    if rng.random() < 0.6:
        image = _marker(rng, np.clip(image, 0.0, 1.0), "L" if rng.random() < 0.5 else "R")

    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    return Phantom(image, masks, dict(phantom.findings), phantom.view, phantom.ctr, dict(phantom.anatomy))


def _affine(
    image: np.ndarray, angle: float, zoom: float, shift: tuple[float, float], *, resample: Image.Resampling
) -> np.ndarray:
    """Rotate by ``angle`` degrees and scale by ``zoom`` about the centre, then shift; edges replicated."""
    rows, cols = image.shape
    pad = max(rows, cols) // 6
    padded = np.pad(image, pad, mode="edge")
    # Output pixel (x, y) reads input (a x + b y + c, d x + e y + f): the inverse of the wanted motion.
    theta = math.radians(angle)
    cos, sin = math.cos(theta) / zoom, math.sin(theta) / zoom
    cx, cy = cols / 2 + pad, rows / 2 + pad
    ox, oy = cx + shift[0], cy + shift[1]
    a, b, d, e = cos, sin, -sin, cos
    c = cx - a * ox - b * oy
    f = cy - d * ox - e * oy
    src = Image.fromarray(np.ascontiguousarray(padded, dtype=np.float32), mode="F")
    moved = src.transform(src.size, Image.Transform.AFFINE, (a, b, c, d, e, f), resample=resample)
    return np.asarray(moved, dtype=np.float32)[pad : pad + rows, pad : pad + cols].copy()


def _marker(rng: np.random.Generator, image: np.ndarray, letter: str) -> np.ndarray:
    """Burn a lead marker: a bright letter in a dark-rimmed square, 3-5% of the width, in an upper corner."""
    rows, cols = image.shape
    side = max(8, int(round(cols * rng.uniform(0.03, 0.05))))
    x0 = int(rng.uniform(0.02, 0.06) * cols)
    if rng.random() < 0.5:
        x0 = cols - x0 - side
    y0 = int(rng.uniform(0.02, 0.06) * rows)
    tile = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(tile)
    w = max(2, side // 5)
    if letter == "L":
        draw.rectangle([side // 4, side // 6, side // 4 + w, side - side // 6], fill=255)
        draw.rectangle([side // 4, side - side // 6 - w, side - side // 4, side - side // 6], fill=255)
    else:
        draw.rectangle([side // 4, side // 6, side // 4 + w, side - side // 6], fill=255)
        draw.ellipse([side // 4, side // 6, side - side // 5, side // 2 + w // 2], outline=255, width=w)
        draw.line([side // 2, side // 2, side - side // 5, side - side // 6], fill=255, width=w)
    glyph = np.asarray(tile, dtype=np.float32) / np.float32(255.0)
    out = image.copy()
    box = out[y0 : y0 + side, x0 : x0 + side]
    out[y0 : y0 + side, x0 : x0 + side] = np.maximum(box * 0.7, glyph * np.float32(rng.uniform(0.9, 1.0)))
    return out
