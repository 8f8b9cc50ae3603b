"""Lateral chest phantoms: a simpler companion view, displayed with the patient facing image left.

Chest units here run ``u`` from anterior (negative, image left) to posterior (positive) and ``v``
downward. The overlapping lungs form one lucent region between the sternum and the spine; the heart
sits antero-inferiorly on the diaphragm; vertebral bodies stack posteriorly.
"""

from __future__ import annotations

import math

import numpy as np

from training.data._phantom import Phantom, develop_phantom, pick_size
from training.data._phantom_draw import (
    Canvas,
    blur,
    ellipse,
    lowpass,
    smooth_noise,
    vessel_tree,
)

_BODY = np.array(
    [
        (-0.30, -2.4), (-0.34, -1.35), (-0.62, -1.10), (-0.78, -0.70), (-0.84, -0.10), (-0.84, 0.50),
        (-0.88, 1.10), (-0.92, 2.40), (0.95, 2.40), (0.92, 1.20), (0.94, 0.40), (0.92, -0.40),
        (0.82, -1.05), (0.55, -1.45), (0.40, -2.4),
    ],
    dtype=np.float64,
)  # fmt: skip

_LUNG = np.array(
    [
        (0.05, -1.05), (-0.18, -0.98), (-0.38, -0.80), (-0.56, -0.50), (-0.64, -0.15), (-0.66, 0.20),
        (-0.62, 0.42), (-0.45, 0.36), (-0.20, 0.28), (0.05, 0.30), (0.30, 0.40), (0.50, 0.56),
        (0.66, 0.80), (0.70, 0.45), (0.68, 0.00), (0.62, -0.45), (0.48, -0.80), (0.28, -1.00),
    ],
    dtype=np.float64,
)  # fmt: skip


def render_lateral(
    rng: np.random.Generator,
    planted: dict[str, bool],
    size_range: tuple[int, int],
    view: str,
    with_anatomy: bool,
) -> Phantom:
    """Draw one lateral phantom with the planted findings (see :func:`generate_phantom`)."""
    rows, cols = pick_size(rng, size_range, landscape_p=0.1)
    wr, wc = (rows + 1) // 2, (cols + 1) // 2
    scale = min(wc * rng.uniform(0.44, 0.5), wr * rng.uniform(0.29, 0.33))
    centre = (wc / 2 + rng.normal(0.0, 0.02) * wc, wr * rng.uniform(0.43, 0.47))
    cv = Canvas((wr, wc), centre, scale, float(np.clip(rng.normal(0.0, 0.03), -0.07, 0.07)))
    sy = rng.uniform(0.94, 1.06)
    lung_pts = _LUNG * (1.0, sy)

    big_heart = planted["cardiomegaly"]
    hr = rng.uniform(0.42, 0.5) if big_heart else rng.uniform(0.31, 0.36)
    heart = ellipse(
        -0.28 + (0.1 if big_heart else 0.0), 0.18 * sy + 0.1, hr, hr * 0.82, math.radians(-30), 40
    )

    body = cv.polygon(_BODY)
    body_skin = blur(body, cv.px(0.03))
    body_depth = lowpass(body, 24)
    lung = cv.paint([("poly", lung_pts, 255), ("poly", heart, 0)])
    lung_soft = blur(lung, cv.px(0.03))
    lung_depth = lowpass(lung, 8)
    heart_map = cv.polygon(heart) * cv.polygon(lung_pts)

    att = body_skin * (0.28 + 0.40 * body_depth)
    lucency = lung_soft * (0.26 + 0.14 * lung_depth) * np.float32(rng.uniform(0.92, 1.08))
    att -= lucency
    att += 0.06 * blur(heart_map, cv.px(0.02))

    bones: list[tuple] = []
    v = -2.0
    while v < 2.6:  # vertebral bodies, posterior
        h = 0.10 + 0.012 * (v + 2.0)
        bones.append(("poly", [(0.66, v), (0.88, v + 0.01), (0.89, v + h), (0.67, v + h)], 170))
        v += h + 0.035
    bones.append(("line", [(-0.72, -0.95), (-0.78, -0.4), (-0.80, 0.3)], 200, 0.05))  # sternum
    for k in range(8):  # posterior ribs seen end-on: faint oblique bands
        y0 = -0.8 + 0.17 * k
        bones.append(("line", [(0.75, y0), (0.3, y0 + 0.12), (-0.2, y0 + 0.3)], 60, 0.05))
    att += 0.10 * cv.paint(bones, blur=cv.px(0.008)) * body_skin
    airway = cv.paint([("line", [(-0.05, -2.0), (0.08, -0.9), (0.15, -0.35)], 255, 0.09)], blur=cv.px(0.012))
    att -= 0.06 * airway * body_skin

    dirs = [math.radians(d) for d in (-120.0, -60.0, 20.0, 80.0, 140.0, 190.0)]
    trees = vessel_tree(rng, (0.12, -0.2 * sy), dirs, length=0.22, width=0.04, generations=4)
    trees.append(("poly", ellipse(0.12, -0.2 * sy, 0.12, 0.15), 170))
    markings = 0.08 * cv.paint(trees, blur=cv.px(0.01)) * lung_depth + 0.012 * smooth_noise(rng, (wr, wc), 40)

    keep = np.ones_like(lung)
    small: dict[str, np.ndarray] = {}
    inside = _inside_points(rng, cv, lung, lung_depth, lung_pts)
    if planted["pneumothorax"]:
        collapsed = lung_pts.copy()
        upper = collapsed[:, 1] < 0.3  # the apex drops; the bases stay
        collapsed[upper, 1] = 0.3 + rng.uniform(0.82, 0.9) * (collapsed[upper, 1] - 0.3)
        col = cv.polygon(collapsed)
        region = np.clip(lung - col, 0.0, 1.0)
        line = cv.paint([("line", np.vstack([collapsed, collapsed[:1]]), 255, 0.012)], blur=0.5)
        line *= (blur(region, 1.5) > 0.08) * lung
        att = att - 0.06 * blur(region, 1.0) + 0.09 * line
        keep *= 1.0 - region
        small["pneumothorax"] = region
    if planted["pleural_effusion"]:
        us = np.linspace(-0.8, 0.9, 14)
        level = rng.uniform(0.3, 0.5) * sy
        surface = level - rng.uniform(0.15, 0.3) * np.clip((us + 0.1) / 0.9, 0, 1) ** 1.6
        fluid = cv.polygon(np.vstack([np.stack([us, surface], axis=1), [(0.9, 1.6), (-0.8, 1.6)]])) * lung
        att = att + blur(fluid, cv.px(0.02)) * lucency * np.float32(rng.uniform(0.85, 1.0))
        keep *= 1.0 - fluid
        small["pleural_effusion"] = fluid
    if planted["consolidation"]:
        cu, cvv = next(inside)
        blobs = [
            ("poly", ellipse(cu + rng.normal(0, 0.1), cvv + rng.normal(0, 0.08), s, s * 0.8, 0.0, 20), 255)
            for s in rng.uniform(0.08, 0.15, size=6)
        ]
        patch = cv.paint(blobs, blur=cv.px(0.05))
        opacity = np.clip((patch - 0.2) / 0.45, 0.0, 1.0) * lung
        att = att + np.float32(rng.uniform(0.6, 0.8)) * opacity * lucency
        keep *= 1.0 - opacity
        small["consolidation"] = opacity
    att += markings * lung_soft * keep
    if planted["nodule"]:
        cu, cvv = next(inside)
        r = rng.uniform(0.022, 0.04) * wc / 2 / scale
        disc = cv.polygon(ellipse(cu, cvv, r, r, 0.0, 28))
        att = att + np.float32(rng.uniform(0.18, 0.26)) * np.sqrt(blur(disc, max(0.6, cv.px(r) * 0.35)))
        small["nodule"] = disc * lung
    if big_heart:
        small["cardiomegaly"] = heart_map

    return develop_phantom(
        rng,
        att,
        (rows, cols),
        findings=small,
        body=body,
        lungs=lung,
        heart=heart_map,
        planted=planted,
        view=view,
        ctr=None,
        with_anatomy=with_anatomy,
    )


def _inside_points(
    rng: np.random.Generator, cv: Canvas, lung: np.ndarray, depth: np.ndarray, pts: np.ndarray
):
    """Endless random points (chest units) well inside the lung region."""
    while True:
        for _ in range(60):
            u = rng.uniform(pts[:, 0].min(), pts[:, 0].max())
            v = rng.uniform(pts[:, 1].min(), pts[:, 1].max())
            x, y = cv.to_pixels(np.array([[u, v]]))[0]
            xi, yi = int(round(x)), int(round(y))
            if (
                0 <= yi < lung.shape[0]
                and 0 <= xi < lung.shape[1]
                and lung[yi, xi] > 0.5
                and depth[yi, xi] > 0.7
            ):
                break
        yield u, v
