"""Synthetic imaging data sets on disk, and the torch-free loader that reads them like the server does.

Layout of a data set folder (also what the ``dicom-folder`` adapter reads)::

    labels.csv        file,split,view,nodule,consolidation,pleural_effusion,pneumothorax,cardiomegaly
    images/000000.dcm DICOM Part-10 files
    masks/000000.npz  boolean masks per planted finding, original geometry (optional)
    dataset.json      how the set was made (synthetic sets only)

Every image is read through :func:`inference.dicom.read_instance` and
:func:`inference.preprocess.prepare`: training sees exactly the tensors the server computes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from training.data._phantom import FINDINGS, LATERAL_VIEWS, generate_phantom
from training.errors import TrainingError

if TYPE_CHECKING:
    from inference.preprocess import PreprocessParams

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps keep mask files byte-reproducible


class DatasetError(TrainingError, ValueError):
    """A data set folder or file is missing, malformed or not in the expected format."""


@dataclass(frozen=True, eq=False)
class ImagingArrays:
    """A loaded imaging data set, ready for a model.

    Attributes:
        x: float32 ``[N, 1, S, S]`` model inputs (normalised as the server normalises them).
        y: float32 ``[N, K]`` labels in :data:`FINDINGS` order (0 or 1).
        masks: bool ``[N, K, S, S]`` finding masks in model geometry, or None when not loaded/available.
        files: Source file of each row, relative to the data set root.
        views: View position of each row (``PA``, ``AP``, ``LL``...; empty when unknown).
        splits: Split of each row (``train``, ``val``, ``test``; empty when the set has none).
    """

    x: np.ndarray
    y: np.ndarray
    masks: np.ndarray | None
    files: list[str]
    views: list[str]
    splits: list[str]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: np.ndarray | Sequence[int]) -> ImagingArrays:
        """Rows ``index`` as a new :class:`ImagingArrays`."""
        idx = np.asarray(index, dtype=np.int64)
        return ImagingArrays(
            x=self.x[idx],
            y=self.y[idx],
            masks=None if self.masks is None else self.masks[idx],
            files=[self.files[i] for i in idx],
            views=[self.views[i] for i in idx],
            splits=[self.splits[i] for i in idx],
        )

    def split(self, name: str) -> ImagingArrays:
        """The rows whose split is ``name``."""
        return self.subset([i for i, s in enumerate(self.splits) if s == name])


class Splits(NamedTuple):
    """Row indices of a deterministic train/validation/test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_indices(n: int, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> Splits:
    """Split ``range(n)`` into train/val/test deterministically.

    Args:
        n: Number of rows.
        seed: The same seed always gives the same split.
        fractions: Train, validation and test fractions (must sum to 1).

    Returns:
        Sorted index arrays; every index appears in exactly one of them.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DatasetError(f"fractions must be three non-negative numbers summing to 1, not {fractions}.")
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_val = min(n_val, n - n_train)
    return Splits(
        train=np.sort(order[:n_train]),
        val=np.sort(order[n_train : n_train + n_val]),
        test=np.sort(order[n_train + n_val :]),
    )


def save_masks(path: Path, masks: dict[str, np.ndarray]) -> Path:
    """Write the non-empty boolean masks to a compressed ``.npz`` with fixed timestamps (reproducible bytes).

    The array shape is stored as ``shape``; absent findings are simply not stored.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = next(iter(masks.values())).shape if masks else (0, 0)
    arrays: dict[str, np.ndarray] = {"shape": np.asarray(shape, dtype=np.int64)}
    arrays.update({k: np.ascontiguousarray(v, dtype=bool) for k, v in masks.items() if v.any()})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=1)
    return path


def load_masks(path: Path, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Read masks written by :func:`save_masks`: every finding of :data:`FINDINGS`, absent ones all False."""
    with np.load(path, allow_pickle=False) as npz:
        stored_shape = tuple(int(v) for v in npz["shape"]) if "shape" in npz.files else shape
        if stored_shape is None:
            raise DatasetError(f"The mask file {Path(path).name} has no shape and none was given.")
        out = {}
        for name in FINDINGS:
            out[name] = npz[name].astype(bool) if name in npz.files else np.zeros(stored_shape, dtype=bool)
    return out


def build_synthetic_imaging(
    out_dir: Path,
    *,
    n: int,
    seed: int,
    size_range: tuple[int, int] = (320, 640),
    lateral_fraction: float = 0.0,
    prevalence: float = 0.25,
    normal_fraction: float = 0.35,
    rle_fraction: float = 0.0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    workers: int = 1,
    acquisition_variation: float = 0.0,
) -> Path:
    """Generate ``n`` synthetic chest radiographs as DICOM files with labels, masks and splits.

    Study ``i`` depends only on ``(seed, i)``: a bigger ``n`` extends a set without changing its first
    studies, and the same arguments give byte-identical files.

    Args:
        out_dir: Folder to write into (created).
        n: Number of images.
        seed: Data-set seed.
        size_range: Range of the longer image side in pixels.
        lateral_fraction: Fraction of lateral (``LL``) views; the rest are frontal PA/AP.
        prevalence: Per-finding prevalence.
        normal_fraction: Fraction of fully normal studies.
        rle_fraction: Fraction of files written RLE Lossless (slower to write; exercises the decoder).
        fractions: Train/val/test fractions for the ``split`` column.
        workers: Processes to generate with; the files are identical whatever the number.
        acquisition_variation: Strength of :func:`training.data.vary_acquisition` (exposure, noise,
            collimation, side markers, positioning) drawn on every image from a stream of its own;
            0 writes the phantoms as generated.

    Returns:
        ``out_dir``.
    """
    if n < 1:
        raise DatasetError(f"n must be at least 1, not {n}.")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    splits = split_indices(n, seed, fractions)
    split_of = np.empty(n, dtype=object)
    for name, idx in zip(("train", "val", "test"), splits, strict=True):
        split_of[idx] = name
    job = _BuildJob(
        out, seed, size_range, lateral_fraction, prevalence, normal_fraction, rle_fraction,
        acquisition_variation,
    )  # fmt: skip
    if workers > 1 and n > 1:
        import multiprocessing as mp

        # Study i depends only on (seed, i), so the pool changes the speed, not a single byte.
        with mp.get_context("spawn").Pool(workers) as pool:
            made = pool.map(job, range(n), chunksize=max(1, n // (workers * 8)))
    else:
        made = [job(i) for i in range(n)]
    rows_out = [[rel, split_of[i], view, *labels] for i, (rel, view, labels) in enumerate(made)]
    write_labels(out / LABELS_FILE, rows_out)
    recipe = {
        "kind": "synthetic-cxr-phantoms",
        "synthetic": True,
        "n": n,
        "seed": seed,
        "size_range": list(size_range),
        "lateral_fraction": lateral_fraction,
        "prevalence": prevalence,
        "normal_fraction": normal_fraction,
        "rle_fraction": rle_fraction,
        "acquisition_variation": acquisition_variation,
        "fractions": list(fractions),
        "findings": list(FINDINGS),
    }
    (out / "dataset.json").write_text(json.dumps(recipe, indent=2) + "\n")
    logger.info("Wrote %d synthetic radiographs to %s", n, out)
    return out


@dataclass(frozen=True)
class _BuildJob:
    """Generate and write study ``i`` of a synthetic set (a picklable callable for the process pool)."""

    out: Path
    seed: int
    size_range: tuple[int, int]
    lateral_fraction: float
    prevalence: float
    normal_fraction: float
    rle_fraction: float
    acquisition_variation: float = 0.0

    def __call__(self, i: int) -> tuple[str, str, list[int]]:
        from training.data._dicom_writer import random_style, write_study

        rng = np.random.default_rng([self.seed, i])
        lateral = rng.random() < self.lateral_fraction
        view = "LL" if lateral else ("AP" if rng.random() < 0.2 else "PA")
        phantom = generate_phantom(
            rng,
            size_range=self.size_range,
            view=view,
            prevalence=self.prevalence,
            normal_fraction=self.normal_fraction,
        )
        if self.acquisition_variation > 0:
            from training.data._acquisition import vary_acquisition

            # A stream of its own: the phantom (and the DICOM style below) stay what they were.
            phantom = vary_acquisition(
                np.random.default_rng([self.seed, i, 0xAC9]), phantom, strength=self.acquisition_variation
            )
        style = random_style(rng, rle_fraction=self.rle_fraction)
        name = f"{i:06d}"
        write_study(phantom, self.out / "images" / f"{name}.dcm", index=i, seed=self.seed, style=style)
        save_masks(self.out / "masks" / f"{name}.npz", phantom.masks)
        return f"images/{name}.dcm", view, [int(phantom.findings[k]) for k in FINDINGS]


def write_labels(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    """Write ``labels.csv`` rows ``[file, split, view, *FINDINGS]`` with a header."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "split", "view", *FINDINGS])
        writer.writerows(rows)


@dataclass(frozen=True)
class _Item:
    """One image to load: where it is, how to read it, its labels."""

    path: Path
    rel: str
    labels: tuple[float, ...]
    view: str
    split: str
    mask_path: Path | None
    kind: str  # "dicom" or "raster" (PNG/JPEG through Pillow)


def _load_one(args: tuple[_Item, PreprocessParams, bool]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and prepare one image (runs in worker processes; module-level so it pickles)."""
    item, params, with_masks = args
    from inference.preprocess import prepare, prepare_pixels

    if item.kind == "dicom":
        from inference.dicom import DicomRejected, Limits, read_instance

        data = item.path.read_bytes()
        limits = Limits(max_instance_bytes=max(len(data), 1024), max_pixels=1 << 28, max_instances=1)
        try:
            instance = read_instance(data, limits=limits, target_size=params.input_size)
        except DicomRejected as e:
            raise DatasetError(f"The file {item.rel} was rejected by the DICOM reader: {e}") from e
        prepared = prepare(instance, params)
    else:
        pixels = _read_raster(item.path, item.rel)
        prepared = prepare_pixels(pixels, photometric="MONOCHROME2", params=params)
    masks = None
    if with_masks and item.mask_path is not None and item.mask_path.exists():
        found = load_masks(item.mask_path, prepared.geometry.original_shape)
        masks = np.stack([prepared.geometry.to_model(found[k]) for k in FINDINGS])
    return prepared.tensor.astype(np.float32, copy=False), masks


def _read_raster(path: Path, rel: str) -> np.ndarray:
    """An 8/16-bit grayscale PNG or JPEG as a 2-D array (colour files are converted to luminance)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I"):
                return np.asarray(img, dtype=np.int32)
            if img.mode != "L":
                img = img.convert("L")
            return np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"The image {rel} could not be read as PNG or JPEG: {e}") from e


def load_items(
    items: Sequence[_Item],
    params: PreprocessParams,
    *,
    with_masks: bool,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ImagingArrays:
    """Load prepared images for ``items`` (in order), in a process pool when ``workers`` > 1."""
    n, size, k = len(items), params.input_size, len(FINDINGS)
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, k, size, size), dtype=bool) if with_masks else None
    any_mask = False
    jobs = [(item, params, with_masks) for item in items]
    if workers > 1 and n > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.imap(_load_one, jobs, chunksize=max(1, min(64, n // (workers * 8) or 1)))
            any_mask = _collect(results, x, masks, n, progress)
    else:
        any_mask = _collect(map(_load_one, jobs), x, masks, n, progress)
    y = np.asarray([item.labels for item in items], dtype=np.float32).reshape(n, k)
    return ImagingArrays(
        x=x,
        y=y,
        masks=masks if any_mask else None,
        files=[item.rel for item in items],
        views=[item.view for item in items],
        splits=[item.split for item in items],
    )


def _collect(results: Any, x: np.ndarray, masks: np.ndarray | None, n: int, progress: Any) -> bool:
    any_mask = False
    for i, (tensor, m) in enumerate(results):
        x[i] = tensor
        if masks is not None and m is not None:
            masks[i] = m
            any_mask = True
        if progress is not None:
            progress(i + 1, n)
    return any_mask


def read_labels_csv(root: Path, *, require_file_column: str = "file") -> list[_Item]:
    """Items of a ``labels.csv`` data set (synthetic or any DICOM folder labelled the same way).

    Finding columns that are missing count as 0 (absent) for every row; ``split`` and ``view`` are
    optional. Masks are taken from ``masks/<stem>.npz`` when present.
    """
    root = Path(root)
    labels = root / LABELS_FILE
    if not labels.is_file():
        raise DatasetError(
            f"No {LABELS_FILE} in {root}; a DICOM folder data set needs a labels.csv with a 'file' "
            f"column and 0/1 columns named {', '.join(FINDINGS)}."
        )
    with open(labels, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if require_file_column not in columns:
            hint = (
                " It is the readers' labels of `dxassist export-training-set --source` (one row per "
                "verdict); for training, export with `dxassist export-training-set --out DIR` (no --source) "
                "and train with `--dataset dxassist-export --data DIR`."
                if "verdict" in columns
                else ""
            )
            raise DatasetError(
                f"{LABELS_FILE} in {root} has no '{require_file_column}' column; it has {columns}.{hint}"
            )
        missing = [k for k in FINDINGS if k not in columns]
        if missing:
            logger.warning(
                "labels.csv has no column for %s; those findings count as absent.", ", ".join(missing)
            )
        items = []
        for line, row in enumerate(reader, start=2):
            rel = (row[require_file_column] or "").strip()
            if not rel:
                raise DatasetError(f"{LABELS_FILE} line {line} has an empty '{require_file_column}'.")
            path = (root / rel).resolve()
            if root.resolve() not in path.parents:
                raise DatasetError(f"{LABELS_FILE} line {line} points outside the data set folder: {rel!r}.")
            labels_row = tuple(_binary(row.get(k), line, k) for k in FINDINGS)
            stem = Path(rel).stem
            mask = root / "masks" / f"{stem}.npz"
            view = (row.get("view") or "").strip().upper()
            items.append(
                _Item(
                    path,
                    rel,
                    labels_row,
                    view,
                    (row.get("split") or "").strip(),
                    mask if mask.exists() else None,
                    "dicom",
                )  # fmt: skip
            )
    return items


def _binary(value: str | None, line: int, column: str) -> float:
    text = (value or "").strip()
    if text in ("", "0", "0.0"):
        return 0.0
    if text in ("1", "1.0"):
        return 1.0
    raise DatasetError(f"{LABELS_FILE} line {line}, column {column}: {text!r} is not 0 or 1.")


def load_imaging_dataset(
    root: Path,
    params: PreprocessParams,
    *,
    with_masks: bool = True,
    workers: int = 1,
    frontal_only: bool = False,
    split: str | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImagingArrays:
    """Load a ``labels.csv`` + DICOM data set (synthetic or any labelled DICOM folder).

    Args:
        root: Data set folder (see the module docstring for the layout).
        params: Preprocessing parameters (the model's).
        with_masks: Also load ``masks/*.npz`` mapped to model geometry (None if the set has none).
        workers: Processes to use; 1 loads in this process.
        frontal_only: Drop rows whose view is lateral (``LL``, ``LAT``, ``RL``).
        split: Keep only rows of this split.
        limit: Keep at most this many rows (after filtering), in file order.
        progress: Called with ``(done, total)`` after each image.

    Returns:
        The arrays, rows in ``labels.csv`` order.
    """
    items = read_labels_csv(Path(root))
    if frontal_only:
        items = [it for it in items if it.view not in (*LATERAL_VIEWS, "RL")]
    if split is not None:
        items = [it for it in items if it.split == split]
    if limit is not None:
        items = items[:limit]
    return load_items(items, params, with_masks=with_masks, workers=workers, progress=progress)
