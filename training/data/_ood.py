"""Images the chest model must refuse: the out-of-distribution evaluation set, written as chest CR DICOM.

Every image is tagged exactly like a chest radiograph (CR, body part CHEST, view PA), so nothing in the
header gives it away and only the OOD score can refuse it, as with a mislabelled study from a PACS.

Kinds (each drawn procedurally or taken from files that installed packages ship):

- ``limb``: a long-bone film (two bones with cortices and joint ends in a soft-tissue sleeve).
- ``skull``: a skull-like film (a bright vault around a grey brain case with sinuses).
- ``rotated_chest``: a chest phantom turned by 90, 180 or 270 degrees (wrong orientation).
- ``photo``: crops of the photograph and of the elevation maps matplotlib ships (natural images).
- ``texture``: 1/f ("natural-photo-like") random textures with hard-edged shapes.
- ``noise``: uniform or Gaussian white noise.
- ``gradient``: linear or radial intensity gradients.
- ``other_modality``: the CT and MR slices pydicom and matplotlib ship, and drawn CT-like and
  ultrasound-like frames, re-tagged as CR.
- ``artefact``: chest phantoms under heavy artefacts (a large metal plate, strong grid lines, severe
  noise, half the film burnt out).
- ``lateral``: lateral chest phantoms tagged as frontal (View Position PA, a frontal Patient
  Orientation): the mislabelled lateral a PACS sends, which only the image itself gives away. The
  imaging model was trained on frontal views only.

The set depends only on ``(seed, per_kind)``; the labels file has a ``kind`` column.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from training.data._phantom import FINDINGS, Phantom, generate_phantom

OOD_KINDS: tuple[str, ...] = (
    "limb",
    "skull",
    "rotated_chest",
    "photo",
    "texture",
    "noise",
    "gradient",
    "other_modality",
    "artefact",
    "lateral",
    "mirrored",
)
"""Kinds of images in the OOD evaluation set, in file order."""

_SIZE_RANGE = (320, 640)


def _shape(rng: np.random.Generator) -> tuple[int, int]:
    long_side = int(rng.integers(_SIZE_RANGE[0], _SIZE_RANGE[1] + 1))
    return long_side, max(64, round(long_side * rng.uniform(0.75, 1.0)))


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1] (x across, y down), aspect-corrected on the longer side."""
    rows, cols = shape
    scale = max(rows, cols)
    y = (np.arange(rows, dtype=np.float32) - rows / 2) / (scale / 2)
    x = (np.arange(cols, dtype=np.float32) - cols / 2) / (scale / 2)
    return np.meshgrid(x, y)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return x * c - y * s, x * s + y * c


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _finish(rng: np.random.Generator, image: np.ndarray, noise: float = 0.015) -> np.ndarray:
    image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _pink(rng: np.random.Generator, shape: tuple[int, int], exponent: float) -> np.ndarray:
    """A random field with a 1/f**exponent amplitude spectrum, scaled to [0, 1]."""
    rows, cols = shape
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.rfftfreq(cols)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**exponent
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=shape).astype(np.float32)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def _limb(rng: np.random.Generator) -> np.ndarray:
    shape = _shape(rng)
    x, y = _grid(shape)
    x, y = _rotate(x, y, rng.uniform(-0.35, 0.35))
    image = np.full(shape, 0.05, dtype=np.float32)
    sleeve = rng.uniform(0.3, 0.45)
    image += 0.3 * (np.abs(x) < sleeve * (1 + 0.15 * np.cos(2.5 * y)))
    for offset, width in (
        (rng.uniform(-0.12, -0.05), rng.uniform(0.07, 0.1)),
        (0.15, rng.uniform(0.03, 0.05)),
    ):
        d = np.abs(x - offset - 0.03 * y)
        widen = width * (1.0 + 0.9 * np.exp(-(((np.abs(y) - 0.85) / 0.12) ** 2)))
        image += 0.35 * (d < widen) + 0.25 * ((d < widen) & (d > 0.6 * widen))
    return _finish(rng, image, noise=0.02)


def _skull(rng: np.random.Generator) -> np.ndarray:
    shape = _shape(rng)
    x, y = _grid(shape)
    x, y = _rotate(x, y, rng.uniform(-0.3, 0.3))
    a, b = rng.uniform(0.6, 0.75), rng.uniform(0.7, 0.85)
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    image = 0.05 + 0.35 * (r < 1.0) + 0.45 * ((r < 1.0) & (r > 0.9))
    for _ in range(3):  # sinuses and orbits: dark holes
        cx, cy, rad = rng.uniform(-0.3, 0.3), rng.uniform(0.1, 0.5), rng.uniform(0.06, 0.14)
        image -= 0.2 * (((x - cx) ** 2 + (y - cy) ** 2) < rad**2)
    image += 0.1 * _pink(rng, shape, 1.5)
    return _finish(rng, image.astype(np.float32))


def _rotated_chest(rng: np.random.Generator) -> np.ndarray:
    phantom = generate_phantom(rng, size_range=_SIZE_RANGE, view="PA")
    return np.ascontiguousarray(np.rot90(phantom.image, k=int(rng.integers(1, 4))))


def _packaged(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def _crop(rng: np.random.Generator, source: np.ndarray) -> np.ndarray:
    rows, cols = source.shape
    side_r = int(rows * rng.uniform(0.5, 1.0))
    side_c = int(cols * rng.uniform(0.5, 1.0))
    r0 = int(rng.integers(0, rows - side_r + 1))
    c0 = int(rng.integers(0, cols - side_c + 1))
    crop = source[r0 : r0 + side_r, c0 : c0 + side_c]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return _resize(crop.astype(np.float32), _shape(rng))


def _photo(rng: np.random.Generator) -> np.ndarray:
    choice = int(rng.integers(0, 3))
    if choice == 0:
        with Image.open(_packaged("grace_hopper.jpg")) as img:
            source = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    else:
        name, key = ("topobathy.npz", "topo") if choice == 1 else ("jacksboro_fault_dem.npz", "elevation")
        with np.load(_packaged(name)) as data:
            source = np.asarray(data[key], dtype=np.float32)
    return _finish(rng, _crop(rng, source), noise=0.005)


def _texture(rng: np.random.Generator) -> np.ndarray:
    shape = _shape(rng)
    image = _pink(rng, shape, rng.uniform(0.8, 1.6))
    x, y = _grid(shape)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy, size = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8), rng.uniform(0.05, 0.3)
        value = rng.uniform(-0.5, 0.5)
        if rng.random() < 0.5:
            image += value * (((x - cx) ** 2 + (y - cy) ** 2) < size**2)
        else:
            image += value * ((np.abs(x - cx) < size) & (np.abs(y - cy) < size * rng.uniform(0.3, 2)))
    return _finish(rng, image.astype(np.float32), noise=0.01)


def _noise(rng: np.random.Generator) -> np.ndarray:
    shape = _shape(rng)
    if rng.random() < 0.5:
        return rng.random(shape, dtype=np.float32)
    return _finish(rng, rng.normal(0.5, 0.2, shape).astype(np.float32), noise=0.0)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    shape = _shape(rng)
    x, y = _grid(shape)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        image = x * math.cos(angle) + y * math.sin(angle)
    else:
        image = -np.sqrt((x - rng.uniform(-0.5, 0.5)) ** 2 + (y - rng.uniform(-0.5, 0.5)) ** 2)
    return _finish(rng, image.astype(np.float32), noise=0.01)


def _other_modality(rng: np.random.Generator) -> np.ndarray:
    choice = int(rng.integers(0, 5))
    if choice in (0, 1):
        from pydicom import dcmread
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm" if choice == 0 else "MR_small.dcm")
        source = dcmread(path).pixel_array.astype(np.float32)
        return _finish(rng, _crop(rng, source), noise=0.005)
    if choice == 2:
        # A 256x256 big-endian 16-bit MR brain slice that matplotlib ships.
        with gzip.open(_packaged("s1045.ima.gz")) as fh:
            source = np.frombuffer(fh.read(), dtype=">u2").reshape(256, 256).astype(np.float32)
        return _finish(rng, _crop(rng, source), noise=0.005)
    shape = _shape(rng)
    x, y = _grid(shape)
    if choice == 3:  # an axial CT slice: body ellipse in black air, bright vertebra, darker lungs
        body = (x / 0.85) ** 2 + ((y - 0.05) / 0.6) ** 2 < 1.0
        image = 0.02 + 0.45 * body
        for side in (-1, 1):
            image -= 0.35 * (((x - side * 0.38) / 0.3) ** 2 + ((y + 0.02) / 0.38) ** 2 < 1.0)
        image += 0.5 * ((x**2 + (y - 0.45) ** 2) < 0.08**2)
        image = image * (x**2 + y**2 < 0.98)  # the circular field of view
        return _finish(rng, image.astype(np.float32), noise=0.02)
    # an ultrasound sector: speckle in a fan on black
    r = np.sqrt(x**2 + (y + 1.0) ** 2)
    theta = np.arctan2(x, y + 1.0)
    fan = (r > 0.3) & (r < 1.9) & (np.abs(theta) < 0.6)
    speckle = rng.rayleigh(0.25, shape).astype(np.float32)
    return _finish(rng, (fan * speckle * (0.6 + 0.4 * _pink(rng, shape, 1.2))).astype(np.float32), noise=0.0)


def _artefact(rng: np.random.Generator) -> np.ndarray:
    image = generate_phantom(rng, size_range=_SIZE_RANGE, view="PA").image.copy()
    rows, cols = image.shape
    choice = int(rng.integers(0, 4))
    if choice == 0:  # a large metal plate over a third to a half of the film
        r0, c0 = int(rng.integers(0, rows // 3)), int(rng.integers(0, cols // 3))
        image[r0 : r0 + rows // 2, c0 : c0 + int(cols * rng.uniform(0.4, 0.6))] = 1.0
    elif choice == 1:  # strong grid lines
        period = rng.uniform(6, 14)
        lines = 0.5 + 0.5 * np.sin(2 * math.pi * np.arange(cols, dtype=np.float32) / period)
        image = 0.3 * image + 0.7 * lines[None, :]
    elif choice == 2:  # severe noise
        image = image + rng.normal(0.0, 0.35, image.shape).astype(np.float32)
    else:  # the upper half and one side burnt out (massive overexposure: no attenuation recorded)
        image[: rows // 2] = 0.0
        image[:, : cols // 2] = 0.0
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _lateral(rng: np.random.Generator) -> np.ndarray:
    return generate_phantom(rng, size_range=_SIZE_RANGE, view="LL").image


def _mirrored(rng: np.random.Generator) -> np.ndarray:
    """A frontal film flipped left-right: the heart on the right, as a wrong orientation flag or situs
    inversus shows it; every texture is a training image's, only the layout differs."""
    phantom = generate_phantom(rng, size_range=_SIZE_RANGE, view="PA")
    return np.ascontiguousarray(phantom.image[:, ::-1])


_DRAW: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "limb": _limb,
    "skull": _skull,
    "rotated_chest": _rotated_chest,
    "photo": _photo,
    "texture": _texture,
    "noise": _noise,
    "gradient": _gradient,
    "other_modality": _other_modality,
    "artefact": _artefact,
    "lateral": _lateral,
    "mirrored": _mirrored,
}


def ood_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One float32 ``[rows, cols]`` image in [0, 1] of ``kind`` (one of :data:`OOD_KINDS`)."""
    if kind not in _DRAW:
        raise ValueError(f"Unknown OOD kind {kind!r}; the kinds are {', '.join(OOD_KINDS)}.")
    return _DRAW[kind](rng)


def ood_phantom(kind: str, rng: np.random.Generator) -> Phantom:
    """An OOD image wrapped as a frontal "phantom" without findings, so the DICOM writer tags it chest PA."""
    image = ood_image(kind, rng)
    empty = np.zeros(image.shape, dtype=bool)
    return Phantom(
        image=image,
        masks=dict.fromkeys(FINDINGS, empty),
        findings=dict.fromkeys(FINDINGS, False),
        view="PA",
    )


def build_ood_set(out_dir: Path, *, per_kind: int, seed: int, kinds: Sequence[str] = OOD_KINDS) -> Path:
    """Write ``per_kind`` images of every kind as chest CR DICOM, with ``labels.csv`` and ``dataset.json``.

    The labels file has the columns a ``labels.csv`` data set has (every finding 0, split ``ood``, view
    ``PA``) plus ``kind``. ``dataset.json`` is written last, so its presence means a complete set.
    ``kinds`` (default: every one) chooses the kinds, e.g. the lateral views the guard is fitted to tell
    apart, drawn with another seed than the evaluation set's.
    """
    from training.data._dicom_writer import random_style, write_study

    if per_kind < 1:
        raise ValueError(f"per_kind must be at least 1, not {per_kind}.")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    index = 0
    for kind in kinds:
        if kind not in _DRAW:
            raise ValueError(f"Unknown OOD kind {kind!r}; the kinds are {', '.join(OOD_KINDS)}.")
    for k, kind in enumerate(kinds):
        for i in range(per_kind):
            rng = np.random.default_rng([seed, 7919, k, i])
            phantom = ood_phantom(kind, rng)
            rel = f"images/{kind}_{i:03d}.dcm"
            write_study(phantom, out / rel, index=index, seed=seed + 104729, style=random_style(rng))
            rows.append([rel, "ood", "PA", kind, *([0] * len(FINDINGS))])
            index += 1
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "split", "view", "kind", *FINDINGS])
        writer.writerows(rows)
    recipe = {"kind": "ood-evaluation-set", "seed": seed, "per_kind": per_kind, "kinds": list(kinds)}
    (out / "dataset.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out


def read_ood_kinds(root: Path) -> list[str]:
    """The ``kind`` column of an OOD set's ``labels.csv``, in file order."""
    with open(Path(root) / "labels.csv", newline="") as fh:
        return [row["kind"] for row in csv.DictReader(fh)]
