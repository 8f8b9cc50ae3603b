"""Synthetic chest radiograph phantoms with planted findings and their ground-truth masks.

A phantom is drawn as an attenuation map: soft-tissue body, air-filled lungs with branching vascular
markings, mediastinum and heart, spine, posterior and anterior ribs, clavicles, humeral heads,
diaphragm domes with sharp costophrenic angles and a gastric bubble. Findings are drawn into the same
map, each with a boolean mask in the geometry of the final image. Everything is numpy + Pillow and
deterministic under the ``numpy.random.Generator`` it is given.

The images are synthetic. A model trained on them learns these phantoms, not patients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from inference.vocabulary import FINDINGS  # the label columns are the product's finding codes
from training.data._phantom_draw import (
    Canvas,
    blur,
    develop,
    ellipse,
    lowpass,
    mask_to,
    smooth_noise,
    vessel_tree,
)
from training.errors import TrainingError

FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")
LATERAL_VIEWS: tuple[str, ...] = ("LL", "LAT")


class PhantomError(TrainingError, ValueError):
    """A phantom was requested with arguments outside what the generator supports."""


@dataclass(frozen=True)
class Phantom:
    """One synthetic radiograph.

    Attributes:
        image: float32 ``[rows, cols]`` in [0, 1]; bright = attenuating (bone, heart), dark = air.
        masks: Boolean ``[rows, cols]`` ground truth per finding code (all of :data:`FINDINGS`);
            all False for a finding that was not planted.
        findings: Which findings were planted.
        view: ``PA``, ``AP``, ``LL`` or ``LAT``.
        ctr: Cardiothoracic ratio of the drawn heart (frontal views), else None.
        anatomy: Optional boolean masks ``body``, ``lungs``, ``heart`` (only when asked for).
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    findings: dict[str, bool]
    view: str
    ctr: float | None = None
    anatomy: dict[str, np.ndarray] = field(default_factory=dict)


def _conditional_rate(prevalence: float, normal_fraction: float, k: int) -> float:
    """Per-finding rate q among abnormal studies (at least one finding) giving the wanted prevalence.

    Marginal prevalence is ``(1 - normal) * q / (1 - (1 - q)**k)``; solved for q by bisection.
    """
    target = prevalence / max(1e-9, 1.0 - normal_fraction)
    if target <= 1.0 / k:
        return 1e-6
    lo, hi = 1e-6, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if mid / (1.0 - (1.0 - mid) ** k) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def sample_findings(
    rng: np.random.Generator, *, prevalence: float = 0.25, normal_fraction: float = 0.35
) -> dict[str, bool]:
    """Draw which findings a study carries.

    A fraction ``normal_fraction`` of studies is fully normal; the others carry at least one finding,
    each finding independently, so that every finding's overall prevalence is ``prevalence``.

    Args:
        rng: Random source.
        prevalence: Marginal prevalence of each finding, in (0, 1).
        normal_fraction: Fraction of fully normal studies, in [0, 1).

    Returns:
        Finding code → planted.
    """
    if not 0.0 < prevalence < 1.0 or not 0.0 <= normal_fraction < 1.0:
        raise PhantomError(
            f"prevalence must lie in (0, 1) and normal_fraction in [0, 1); got {prevalence} and "
            f"{normal_fraction}."
        )
    if prevalence > 1.0 - normal_fraction:
        raise PhantomError(
            f"A prevalence of {prevalence} cannot be reached when {normal_fraction:.0%} of studies "
            "are normal."
        )
    normal = rng.random() < normal_fraction
    q = _conditional_rate(prevalence, normal_fraction, len(FINDINGS))
    while True:
        draws = rng.random(len(FINDINGS)) < q
        if normal or draws.any():
            break
    return {name: bool(d) and not normal for name, d in zip(FINDINGS, draws, strict=True)}


def generate_phantom(
    rng: np.random.Generator,
    *,
    findings: Mapping[str, bool] | None = None,
    size_range: tuple[int, int] = (320, 640),
    view: str = "PA",
    prevalence: float = 0.25,
    normal_fraction: float = 0.35,
    with_anatomy: bool = False,
) -> Phantom:
    """Draw one synthetic chest radiograph.

    Args:
        rng: Random source; the same generator state gives the same phantom, bit for bit.
        findings: Which findings to plant (missing codes = absent). None samples them with
            ``prevalence`` and ``normal_fraction`` (see :func:`sample_findings`).
        size_range: Inclusive range for the longer image side in pixels; the other side follows a
            portrait (mostly) or slightly landscape aspect ratio.
        view: ``PA`` or ``AP`` (frontal), ``LL`` or ``LAT`` (lateral).
        prevalence: Per-finding prevalence when sampling.
        normal_fraction: Fraction of fully normal studies when sampling.
        with_anatomy: Also return ``body``, ``lungs`` and ``heart`` masks (tests and figures).

    Returns:
        The phantom with its masks in the geometry of ``image``.

    Raises:
        PhantomError: For an unknown view or finding code, or a size range outside 64..4096.
    """
    if view not in FRONTAL_VIEWS + LATERAL_VIEWS:
        raise PhantomError(f"Unknown view {view!r}; accepted views are PA, AP, LL and LAT.")
    lo, hi = size_range
    if not 64 <= lo <= hi <= 4096:
        raise PhantomError(f"size_range must satisfy 64 <= low <= high <= 4096; got {size_range}.")
    if findings is None:
        planted = sample_findings(rng, prevalence=prevalence, normal_fraction=normal_fraction)
    else:
        unknown = set(findings) - set(FINDINGS)
        if unknown:
            raise PhantomError(
                f"Unknown finding code(s) {sorted(unknown)}; accepted codes are {', '.join(FINDINGS)}."
            )
        planted = {name: bool(findings.get(name, False)) for name in FINDINGS}
    if view in LATERAL_VIEWS:
        from training.data._phantom_lateral import render_lateral

        return render_lateral(rng, planted, size_range, view, with_anatomy)
    return _render_frontal(rng, planted, size_range, view, with_anatomy)


def pick_size(rng: np.random.Generator, size_range: tuple[int, int], landscape_p: float) -> tuple[int, int]:
    """Rows and columns: the longer side in ``size_range``, portrait 14x17-like or slightly landscape."""
    long_side = int(rng.integers(size_range[0], size_range[1] + 1))
    if rng.random() < landscape_p:
        return max(64, round(long_side * rng.uniform(0.86, 0.97))), long_side
    return long_side, max(64, round(long_side * rng.uniform(0.8, 0.97)))


# Outline of the right lung (image left) in chest units, clockwise from the apex: lateral wall, sharp
# costophrenic angle, diaphragm dome, then the medial border along the mediastinum.
_RIGHT_LUNG = np.array(
    [
        (-0.40, -1.02), (-0.55, -0.99), (-0.69, -0.92), (-0.81, -0.80), (-0.90, -0.62), (-0.96, -0.40),
        (-1.00, -0.15), (-1.02, 0.10), (-1.03, 0.35), (-1.02, 0.55), (-1.00, 0.72),
        (-0.93, 0.60), (-0.83, 0.50), (-0.70, 0.43), (-0.55, 0.40), (-0.40, 0.41), (-0.27, 0.45),
        (-0.16, 0.52), (-0.12, 0.30), (-0.11, 0.00), (-0.11, -0.30), (-0.13, -0.60), (-0.19, -0.85),
        (-0.29, -0.98),
    ],
    dtype=np.float64,
)  # fmt: skip
_LATERAL_IDX = slice(0, 11)  # apex .. costophrenic tip
_DOME_IDX = slice(10, 18)

_MEDIASTINUM = np.array(
    [
        (-0.15, -1.9), (0.15, -1.9), (0.15, -0.78), (0.21, -0.66), (0.26, -0.56), (0.27, -0.46),
        (0.22, -0.38), (0.24, -0.25), (0.22, -0.05), (0.10, 0.55), (-0.12, 0.55), (-0.19, -0.05),
        (-0.18, -0.40), (-0.16, -0.80),
    ],
    dtype=np.float64,
)  # fmt: skip

_BODY_RIGHT = np.array(
    [
        (-0.26, -2.4), (-0.26, -1.42), (-0.42, -1.30), (-0.75, -1.24), (-1.05, -1.19), (-1.30, -1.10),
        (-1.45, -0.95), (-1.42, -0.75), (-1.27, -0.58), (-1.22, -0.20), (-1.22, 0.40), (-1.19, 1.00),
        (-1.14, 1.70), (-1.10, 2.60),
    ],
    dtype=np.float64,
)  # fmt: skip

# Lobar regions for consolidation: centre (u, v) and semi-axes, right lung negative u.
_LOBES = (
    ((-0.58, -0.55), (0.32, 0.28)),  # right upper
    ((-0.36, 0.12), (0.26, 0.18)),  # right middle, against the right heart border
    ((-0.62, 0.30), (0.32, 0.20)),  # right lower
    ((0.58, -0.52), (0.30, 0.28)),  # left upper
    ((0.72, 0.28), (0.26, 0.22)),  # left lower, lateral to the heart
)


@dataclass
class _Frontal:
    """Working-grid maps shared by the anatomy and the findings."""

    canvas: Canvas
    lungs: list[np.ndarray]  # per side (0 = right / image left), sharp [0, 1]
    lung_pts: list[np.ndarray]
    lung_all: np.ndarray
    lung_soft: np.ndarray
    lung_depth: np.ndarray
    lucency: np.ndarray  # how much the air in the lungs lowers attenuation


def _mirror(pts: np.ndarray) -> np.ndarray:
    out = pts.copy()
    out[:, 0] = -out[:, 0]
    return out


def _heart_outline(ctr: float, thoracic_width: float, centre_u: float, jitter: float) -> np.ndarray:
    """Heart silhouette as a tilted ellipse whose horizontal extent is exactly ``ctr`` x thoracic width.

    About 36% of the heart lies right of the midline (image left), the apex points down and to the
    patient's left.
    """
    width = ctr * thoracic_width
    phi = math.radians(24.0 + jitter)
    ratio = 0.74
    a = (width / 2) / math.sqrt(math.cos(phi) ** 2 + (ratio * math.sin(phi)) ** 2)
    b = ratio * a
    cu = centre_u - 0.36 * width + width / 2
    half_height = math.sqrt((a * math.sin(phi)) ** 2 + (b * math.cos(phi)) ** 2)
    cv = 0.56 - half_height * 0.72
    return ellipse(cu, cv, a, b, phi, n=48)


def _rib_paths(lat_v: np.ndarray, lat_u: np.ndarray, sign: float, sy: float) -> tuple[list, list]:
    """Posterior and anterior rib centre lines for one side.

    Posterior ribs leave the spine, arch slightly upward and fall at the lateral wall; anterior ribs run
    from the lateral wall obliquely down and medially and stop at the costochondral junctions.
    """
    posterior, anterior = [], []
    v0 = -1.0 * sy
    for k in range(10):
        lateral = float(np.interp(v0 + 0.12, lat_v, lat_u)) + 0.05
        s = np.linspace(0.0, 1.0, 10)
        pu = 0.07 + (lateral - 0.07) * s
        pv = v0 - 0.07 * np.sin(math.pi * s) + 0.24 * s**2.5
        if k == 0:  # the first rib is short and hugs the apex
            pu = 0.07 + (lateral - 0.07) * s * 0.8
        posterior.append(np.stack([sign * pu, pv], axis=1))
        t = np.linspace(0.0, 1.0, 8)
        au = lateral + 0.01 - (lateral - 0.40) * t**1.15
        av = v0 + 0.27 + 0.34 * t - 0.04 * t**2
        if k < 7:  # lower costal cartilages do not show
            anterior.append(np.stack([sign * au, av], axis=1))
        v0 += (0.135 + 0.009 * k) * sy
    return posterior, anterior


def _render_frontal(
    rng: np.random.Generator,
    planted: dict[str, bool],
    size_range: tuple[int, int],
    view: str,
    with_anatomy: bool,
) -> Phantom:
    rows, cols = pick_size(rng, size_range, landscape_p=0.15)
    wr, wc = (rows + 1) // 2, (cols + 1) // 2  # anatomy is drawn at half resolution, noise at full
    scale = min(wc * rng.uniform(0.36, 0.42), wr * rng.uniform(0.29, 0.33))
    centre = (wc / 2 + rng.normal(0.0, 0.02) * wc, wr * rng.uniform(0.43, 0.47))
    angle = float(np.clip(rng.normal(0.0, 0.025), -0.06, 0.06))
    cv = Canvas((wr, wc), centre, scale, angle)
    sx, sy = rng.uniform(0.95, 1.05), rng.uniform(0.93, 1.06)

    right = _RIGHT_LUNG * (sx, sy)
    right[_DOME_IDX, 1] += rng.normal(0.0, 0.03)
    left = _mirror(_RIGHT_LUNG) * (sx * rng.uniform(0.97, 1.02), sy)
    left[_DOME_IDX, 1] += 0.05 + rng.normal(0.0, 0.03)  # the left hemidiaphragm sits lower
    thoracic_width = float(left[:, 0].max() - right[:, 0].min())
    ctr = float(rng.uniform(0.58, 0.66) if planted["cardiomegaly"] else rng.uniform(0.42, 0.49))
    heart = _heart_outline(ctr, thoracic_width, 0.0, rng.normal(0, 3))
    heart[:, 1] *= sy
    mediastinum = _MEDIASTINUM * (1.0, sy)
    thorax_outline = np.vstack(
        [right[_LATERAL_IDX], right[_DOME_IDX][:-1], [(0.0, 0.52 * sy)], left[_DOME_IDX][::-1][1:],
         left[_LATERAL_IDX][::-1]]
    )  # fmt: skip
    body_pts = np.vstack([_BODY_RIGHT, _mirror(_BODY_RIGHT[::-1])])

    # One layer holds the lungs (right 255, left 128) with mediastinum and heart cut out of them.
    lung_layer = cv.paint(
        [("poly", right, 255), ("poly", left, 128), ("poly", mediastinum, 0), ("poly", heart, 0)]
    )
    lungs = [
        (lung_layer > 0.75).astype(np.float32),
        ((lung_layer > 0.25) & (lung_layer < 0.75)).astype(np.float32),
    ]
    lung_all = lungs[0] + lungs[1]
    lung_soft = blur(lung_all, cv.px(0.025))
    lung_depth = lowpass(lung_all, 8)
    # Body (255), heart above the diaphragm (thorax 128, heart 255 drawn after): one layer each.
    body = cv.polygon(body_pts)
    body_skin = blur(body, cv.px(0.03))
    body_depth = lowpass(body, 24)
    thorax = cv.polygon(thorax_outline)
    heart_map = cv.polygon(heart) * thorax
    central = np.maximum(cv.polygon(mediastinum) * thorax * 0.6, heart_map)

    att = body_skin * (0.20 + 0.46 * body_depth)
    lucency = lung_soft * (0.30 + 0.16 * lung_depth) * np.float32(rng.uniform(0.92, 1.08))
    att -= lucency
    att += 0.12 * blur(central, cv.px(0.012))

    # Bones in one layer: spine, anterior ribs, posterior ribs with a brighter cortex, clavicles,
    # humeral heads.
    bones: list[tuple] = []
    v = -2.0
    while v < 2.6:
        h = 0.10 + 0.012 * (v + 2.0)
        bones.append(("poly", [(-0.12, v), (0.12, v), (0.13, v + h), (-0.13, v + h)], 80))
        v += h + 0.035
    post, ant = [], []
    for sign, pts in ((-1.0, right), (1.0, left)):
        lat = pts[_LATERAL_IDX]
        p, a = _rib_paths(lat[:, 1], np.abs(lat[:, 0]), sign, sy)
        post += p
        ant += a
    w_post = 0.066 * rng.uniform(0.9, 1.1)
    bones += [("line", a, 80, 0.05) for a in ant]
    bones += [("line", p, 170, w_post) for p in post]
    bones += [("line", p, 125, w_post * 0.5) for p in post]
    for sign in (-1.0, 1.0):
        pts = np.array([(0.10, -0.93), (0.35, -0.99), (0.62, -1.06), (0.88, -1.13), (1.05, -1.14)])
        pts[:, 1] = pts[:, 1] * sy + rng.normal(0.0, 0.03)
        bones.append(("line", pts * (sign, 1.0), 230, 0.075))
        bones.append(("poly", ellipse(sign * 1.33, -1.0 * sy, 0.17, 0.21), 200))
    att += 0.10 * cv.paint(bones, blur=cv.px(0.007)) * body_skin

    # Trachea and main bronchi: an air column inside the mediastinum.
    airway = cv.paint(
        [
            ("line", [(0.0, -2.0), (0.0, -0.45 * sy)], 255, 0.10),
            ("line", [(0.0, -0.45 * sy), (-0.19, -0.28 * sy)], 255, 0.06),
            ("line", [(0.0, -0.45 * sy), (0.21, -0.24 * sy)], 255, 0.06),
        ],
        blur=cv.px(0.012),
    )
    att -= 0.06 * airway * body_skin

    # Vascular markings: branching trees from both hila, fading to the periphery.
    trees: list[tuple] = []
    for sign in (-1.0, 1.0):
        root = (sign * 0.24 * sx, -0.16 * sy)
        base = [-100.0, -140.0, 175.0, 150.0, 115.0, 80.0] if sign < 0 else [-80.0, -40.0, 5.0, 30.0, 65.0]
        dirs = [math.radians(d + rng.normal(0.0, 8.0)) for d in base]
        trees += vessel_tree(rng, root, dirs, length=0.22, width=0.036, generations=4)
        trees.append(("poly", ellipse(sign * 0.25 * sx, -0.17 * sy, 0.07, 0.12), 170))
    vessels = cv.paint(trees, blur=cv.px(0.01))
    texture = smooth_noise(rng, (wr, wc), 40)
    markings = 0.10 * vessels * (0.3 + 0.7 * lung_depth) + 0.012 * texture

    f = _Frontal(cv, lungs, [right, left], lung_all, lung_soft, lung_depth, lucency)
    keep_markings = np.ones_like(lung_all)
    masks_small: dict[str, np.ndarray] = {}
    if planted["pneumothorax"]:
        att, keep_markings, masks_small["pneumothorax"] = _pneumothorax(rng, f, att, keep_markings)
    if planted["pleural_effusion"]:
        att, keep_markings, masks_small["pleural_effusion"] = _effusion(rng, f, att, keep_markings, sy)
    if planted["consolidation"]:
        att, keep_markings, masks_small["consolidation"] = _consolidation(rng, f, att, keep_markings)
    att += markings * lung_soft * keep_markings
    if planted["nodule"]:
        att, masks_small["nodule"] = _nodule(rng, f, att)
    if planted["cardiomegaly"]:
        masks_small["cardiomegaly"] = heart_map

    if rng.random() < 0.75:  # gastric bubble under the left dome
        bubble = cv.polygon(ellipse(0.42 * sx, (0.66 + 0.05) * sy, 0.11, 0.065), blur=cv.px(0.015))
        att -= 0.10 * bubble * (1.0 - lung_all)

    return develop_phantom(
        rng,
        att,
        (rows, cols),
        findings=masks_small,
        body=body,
        lungs=lung_all,
        heart=heart_map,
        planted=planted,
        view=view,
        ctr=ctr,
        with_anatomy=with_anatomy,
    )


def develop_phantom(
    rng: np.random.Generator,
    att: np.ndarray,
    shape: tuple[int, int],
    *,
    findings: Mapping[str, np.ndarray],
    body: np.ndarray,
    lungs: np.ndarray,
    heart: np.ndarray,
    planted: Mapping[str, bool],
    view: str,
    ctr: float | None,
    with_anatomy: bool,
) -> Phantom:
    """The phantom of a drawn attenuation map (frontal or lateral): the developed image of ``shape``,
    each planted finding's mask (drawn at canvas size in ``findings``) kept inside the body and brought
    to ``shape``, and the ``body``/``lungs``/``heart`` masks when ``with_anatomy``."""
    image = develop(rng, att, shape)
    # A finding's mask never leaves the body outline (a thresholding edge could otherwise poke out).
    masks = {
        name: (mask_to(findings[name] * body, shape) if name in findings else np.zeros(shape, dtype=bool))
        for name in FINDINGS
    }
    anatomy: dict[str, np.ndarray] = {}
    if with_anatomy:
        anatomy = {
            "body": mask_to(body, shape),
            "lungs": mask_to(lungs, shape),
            "heart": mask_to(heart, shape),
        }
    return Phantom(image, masks, dict(planted), view, ctr, anatomy)


def _pick_in_lung(rng: np.random.Generator, f: _Frontal, side: int, depth: float) -> tuple[float, float]:
    """A random point (chest units) inside one lung where the smoothed lung map exceeds ``depth``."""
    pts = f.lung_pts[side]
    fallback = (float(pts[:, 0].mean()), float(pts[:, 1].mean()) - 0.2)
    for _ in range(60):
        u = rng.uniform(pts[:, 0].min(), pts[:, 0].max())
        v = rng.uniform(pts[:, 1].min(), pts[:, 1].max())
        x, y = f.canvas.to_pixels(np.array([[u, v]]))[0]
        xi, yi = int(round(x)), int(round(y))
        if (
            0 <= yi < f.lung_all.shape[0]
            and 0 <= xi < f.lung_all.shape[1]
            and f.lungs[side][yi, xi] > 0.5
            and f.lung_depth[yi, xi] > depth
        ):
            return u, v
    return fallback


def _nodule(rng: np.random.Generator, f: _Frontal, att: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A well-circumscribed round opacity, 2-4% of the image width across, inside a lung."""
    cv = f.canvas
    side = int(rng.integers(0, 2))
    cu, cvv = _pick_in_lung(rng, f, side, 0.75)
    diameter_px = rng.uniform(0.022, 0.04) * cv.shape[1]
    r = diameter_px / 2 / cv.scale
    disc = cv.polygon(ellipse(cu, cvv, r, r * rng.uniform(0.85, 1.0), rng.uniform(0, math.pi), 28))
    body = blur(disc, max(0.6, cv.px(r) * 0.35))
    # A sphere is thickest in its centre: the opacity fades towards the rim.
    att = att + np.float32(rng.uniform(0.18, 0.26)) * np.sqrt(body)
    return att, disc * f.lung_all


def _consolidation(
    rng: np.random.Generator, f: _Frontal, att: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patchy, ill-defined airspace opacity confined to one lobar region, sometimes with air bronchograms."""
    cv = f.canvas
    lobe = int(rng.integers(0, len(_LOBES)))
    (cu, cvv), (au, av) = _LOBES[lobe]
    side = 0 if cu < 0 else 1
    blobs: list[tuple] = []
    for _ in range(int(rng.integers(6, 11))):
        t = rng.uniform(0, 2 * math.pi)
        rr = math.sqrt(rng.uniform(0, 1))
        bu = cu + au * 0.8 * rr * math.cos(t)
        bv = cvv + av * 0.8 * rr * math.sin(t)
        s = rng.uniform(0.07, 0.15)
        blobs.append(
            ("poly", ellipse(bu, bv, s, s * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi), 20), 255)
        )
    patch = cv.paint(blobs, blur=cv.px(0.05))
    patch = patch * (0.75 + 0.35 * smooth_noise(rng, patch.shape, 24))
    opacity = np.clip((patch - 0.2) / 0.45, 0.0, 1.0) * f.lungs[side]
    opacity = blur(opacity, cv.px(0.01))
    strength = np.float32(rng.uniform(0.6, 0.8))
    att = att + strength * opacity * f.lucency
    if rng.random() < 0.5:  # air bronchograms: dark branching tubes inside the opacity
        hilum = (0.25 if side else -0.25, -0.12)
        d = math.atan2(cvv - hilum[1], cu - hilum[0])
        tubes = vessel_tree(rng, (hilum[0] + 0.6 * (cu - hilum[0]), hilum[1] + 0.6 * (cvv - hilum[1])),
                            [d], length=0.14, width=0.022, generations=3)  # fmt: skip
        air = cv.paint(tubes, blur=0.6)
        att = att - 0.6 * strength * air * opacity * f.lucency
    return att, keep * (1.0 - opacity), opacity


def _effusion(
    rng: np.random.Generator, f: _Frontal, att: np.ndarray, keep: np.ndarray, sy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dependent fluid at one or both lung bases: a meniscus climbing the lateral wall, angle obliterated."""
    cv = f.canvas
    sides = [0, 1] if rng.random() < 0.2 else [int(rng.integers(0, 2))]
    fluid_all = np.zeros_like(att)
    for side in sides:
        sign = -1.0 if side == 0 else 1.0
        pts = f.lung_pts[side]
        dome = float(pts[_DOME_IDX, 1].min())
        level = dome - rng.uniform(0.05, 0.32) * sy
        rise = rng.uniform(0.15, 0.32) * sy
        us = np.linspace(0.05, 1.25, 16)
        surface = level - rise * np.clip((us - 0.15) / 0.9, 0, 1) ** 1.6
        poly = np.vstack([np.stack([sign * us, surface], axis=1), [(sign * 1.25, 1.6), (sign * 0.05, 1.6)]])
        fluid = cv.polygon(poly)
        region = fluid * f.lungs[side]
        fluid_all = np.maximum(fluid_all, region)
    soft = blur(fluid_all, cv.px(0.02))
    # Fluid replaces the air: the lung lucency is cancelled to soft-tissue density.
    att = att + soft * f.lucency * np.float32(rng.uniform(0.85, 1.0))
    return att, keep * (1.0 - soft), fluid_all


def _pneumothorax(
    rng: np.random.Generator, f: _Frontal, att: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apical/lateral pleural air: no lung markings, darker, a thin visceral pleural line at the lung edge."""
    cv = f.canvas
    side = int(rng.integers(0, 2))
    sign = -1.0 if side == 0 else 1.0
    pts = f.lung_pts[side].copy()
    anchor_u, anchor_v = sign * 0.22, rng.uniform(0.0, 0.3)
    su, sv = rng.uniform(0.72, 0.86), rng.uniform(0.7, 0.85)
    lateral = sign * (pts[:, 0] - anchor_u) > 0
    pts[lateral, 0] = anchor_u + su * (pts[lateral, 0] - anchor_u)
    upper = pts[:, 1] < anchor_v
    pts[upper, 1] = anchor_v + sv * (pts[upper, 1] - anchor_v)
    collapsed = cv.polygon(pts)
    region = np.clip(f.lungs[side] - collapsed, 0.0, 1.0)
    near = blur(region, 1.5) > 0.08
    line = cv.paint([("line", np.vstack([pts, pts[:1]]), 255, 0.012)], blur=0.5) * near * f.lungs[side]
    soft = blur(region, cv.px(0.01))
    att = att - np.float32(rng.uniform(0.05, 0.08)) * soft + 0.10 * line + 0.015 * collapsed * f.lungs[side]
    return att, keep * (1.0 - soft), region
