"""Adapters for real chest radiograph data sets, all returning :class:`ImagingArrays` in FINDINGS order.

- ``nih``: NIH ChestX-ray14 (``Data_Entry_2017.csv`` + PNG files under ``images*/``). Nodule →
  nodule, Consolidation → consolidation, Effusion → pleural_effusion, Pneumothorax → pneumothorax,
  Cardiomegaly → cardiomegaly; the other nine labels are ignored (a row with only those counts as
  negative for all five). ``train_val_list.txt`` / ``test_list.txt`` give the split when present.
- ``chexpert``: CheXpert (``train.csv`` / ``valid.csv``, JPEG files). Lung Lesion → nodule,
  Consolidation, Pleural Effusion, Pneumothorax, Cardiomegaly. Blank = 0; -1 (uncertain) follows
  ``uncertain``: ``zeros`` (U-Zeros), ``ones`` (U-Ones) or ``ignore`` (drop rows uncertain for any of
  the five). Only frontal images are kept.
- ``dicom-folder`` / ``synthetic``: ``labels.csv`` + DICOM files (see :mod:`training.data._imaging`);
  finding columns that are missing count as 0.
- ``dxassist-export``: the model inputs the server kept, labelled by the readers
  (``dxassist export-training-set --out``; :mod:`training.data._adapters_export`).

PNG and JPEG pixels go through :func:`inference.preprocess.prepare_pixels` as MONOCHROME2 with the
percentile window, the same code path as DICOM files without a window. No masks exist for real sets.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from training.data._imaging import DatasetError, ImagingArrays, _Item, load_imaging_dataset, load_items
from training.data._phantom import FINDINGS

if TYPE_CHECKING:
    from inference.preprocess import PreprocessParams

logger = logging.getLogger(__name__)

NIH_LABELS = {
    "Nodule": "nodule",
    "Consolidation": "consolidation",
    "Effusion": "pleural_effusion",
    "Pneumothorax": "pneumothorax",
    "Cardiomegaly": "cardiomegaly",
}
CHEXPERT_LABELS = {
    "Lung Lesion": "nodule",
    "Consolidation": "consolidation",
    "Pleural Effusion": "pleural_effusion",
    "Pneumothorax": "pneumothorax",
    "Cardiomegaly": "cardiomegaly",
}
DATASETS = ("synthetic", "nih", "chexpert", "dicom-folder", "dxassist-export")
Uncertain = Literal["zeros", "ones", "ignore"]


def _index_pngs(root: Path) -> dict[str, Path]:
    """File name → path for every PNG under ``root/images*`` at any depth."""
    found: dict[str, Path] = {}
    for folder in sorted(root.glob("images*")):
        if folder.is_dir():
            for path in folder.rglob("*.png"):
                found.setdefault(path.name, path)
    return found


def _read_list(path: Path) -> set[str]:
    return (
        {line.strip() for line in path.read_text().splitlines() if line.strip()} if path.is_file() else set()
    )


def load_nih(
    root: Path,
    params: PreprocessParams,
    *,
    workers: int = 1,
    limit: int | None = None,
    split: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImagingArrays:
    """Load NIH ChestX-ray14 from ``root`` (``Data_Entry_2017.csv`` and ``images*/**/*.png``).

    Rows whose PNG is not found are skipped with one warning (the set is often downloaded in parts).
    The split is ``test`` for names in ``test_list.txt``, ``train`` for ``train_val_list.txt``, else empty.
    """
    root = Path(root)
    table = root / "Data_Entry_2017.csv"
    if not table.is_file():
        raise DatasetError(f"No Data_Entry_2017.csv in {root}; expected the NIH ChestX-ray14 layout.")
    pngs = _index_pngs(root)
    test_names, train_names = _read_list(root / "test_list.txt"), _read_list(root / "train_val_list.txt")
    items: list[_Item] = []
    missing = 0
    with open(table, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"Image Index", "Finding Labels"}
        if not need <= set(reader.fieldnames or []):
            raise DatasetError(
                f"Data_Entry_2017.csv lacks the columns {sorted(need)}; it has {reader.fieldnames}."
            )
        for row in reader:
            name = row["Image Index"].strip()
            path = pngs.get(name)
            if path is None:
                missing += 1
                continue
            labels = {t.strip() for t in (row["Finding Labels"] or "").split("|")}
            y = tuple(float(any(NIH_LABELS[t] == k for t in labels if t in NIH_LABELS)) for k in FINDINGS)
            row_split = "test" if name in test_names else ("train" if name in train_names else "")
            if split is not None and row_split != split:
                continue
            view = (row.get("View Position") or "").strip().upper()
            items.append(_Item(path, str(path.relative_to(root)), y, view, row_split, None, "raster"))
            if limit is not None and len(items) >= limit:
                break
    if missing:
        logger.warning("%d rows of Data_Entry_2017.csv have no PNG under %s/images*; skipped.", missing, root)
    if not items:
        raise DatasetError(f"No NIH images found under {root}/images*; nothing to load.")
    return load_items(items, params, with_masks=False, workers=workers, progress=progress)


def _chexpert_path(root: Path, rel: str) -> Path | None:
    """CheXpert paths start with the release folder name (``CheXpert-v1.0-small/train/...``)."""
    rel_path = Path(rel)
    for candidate in (root / rel_path, root.parent / rel_path, root / Path(*rel_path.parts[1:])):
        if candidate.is_file():
            return candidate
    return None


def load_chexpert(
    root: Path,
    params: PreprocessParams,
    *,
    uncertain: Uncertain = "zeros",
    workers: int = 1,
    limit: int | None = None,
    split: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImagingArrays:
    """Load CheXpert from ``root`` (``train.csv`` → split ``train``, ``valid.csv`` → split ``val``).

    Args:
        root: The release folder holding the CSV files.
        params: Preprocessing parameters.
        uncertain: Policy for -1 labels: ``zeros``, ``ones`` or ``ignore`` (drop the row).
        workers: Loader processes.
        limit: At most this many rows.
        split: ``train`` or ``val`` to read one CSV only.
        progress: Called with ``(done, total)``.
    """
    if uncertain not in ("zeros", "ones", "ignore"):
        raise DatasetError(f"uncertain must be 'zeros', 'ones' or 'ignore', not {uncertain!r}.")
    root = Path(root)
    sources = [("train.csv", "train"), ("valid.csv", "val")]
    if split is not None:
        sources = [s for s in sources if s[1] == split]
    items: list[_Item] = []
    found_csv = False
    for csv_name, split_name in sources:
        table = root / csv_name
        if not table.is_file():
            continue
        found_csv = True
        with open(table, newline="") as fh:
            reader = csv.DictReader(fh)
            if "Path" not in (reader.fieldnames or []):
                raise DatasetError(f"{csv_name} has no 'Path' column; it has {reader.fieldnames}.")
            for line, row in enumerate(reader, start=2):
                if (row.get("Frontal/Lateral") or "Frontal").strip() != "Frontal":
                    continue
                y = []
                drop = False
                for column, code in CHEXPERT_LABELS.items():
                    value = _chexpert_value(row.get(column), csv_name, line, column)
                    if value < 0:
                        if uncertain == "ignore":
                            drop = True
                        value = 1.0 if uncertain == "ones" else 0.0
                    y.append((FINDINGS.index(code), value))
                if drop:
                    continue
                labels = [0.0] * len(FINDINGS)
                for i, value in y:
                    labels[i] = value
                path = _chexpert_path(root, row["Path"].strip())
                if path is None:
                    raise DatasetError(f"{csv_name} line {line}: the image {row['Path']!r} was not found.")
                view = (row.get("AP/PA") or "").strip().upper()
                items.append(
                    _Item(path, row["Path"].strip(), tuple(labels), view, split_name, None, "raster")
                )
                if limit is not None and len(items) >= limit:
                    break
    if not found_csv:
        raise DatasetError(f"No train.csv or valid.csv in {root}; expected the CheXpert layout.")
    if not items:
        raise DatasetError(f"No frontal CheXpert rows to load under {root} with uncertain={uncertain!r}.")
    return load_items(items, params, with_masks=False, workers=workers, progress=progress)


def _chexpert_value(text: str | None, csv_name: str, line: int, column: str) -> float:
    value = (text or "").strip()
    if value == "":
        return 0.0
    try:
        number = float(value)
    except ValueError as e:
        raise DatasetError(
            f"{csv_name} line {line}, column {column!r}: {value!r} is not 1, 0, -1 or blank."
        ) from e
    if number not in (1.0, 0.0, -1.0):
        raise DatasetError(f"{csv_name} line {line}, column {column!r}: {value!r} is not 1, 0, -1 or blank.")
    return number


def load_dataset(
    name: str,
    path: Path,
    params: PreprocessParams,
    *,
    with_masks: bool = True,
    workers: int = 1,
    limit: int | None = None,
    split: str | None = None,
    uncertain: Uncertain = "zeros",
    progress: Callable[[int, int], None] | None = None,
) -> ImagingArrays:
    """Load an imaging data set by name: ``synthetic``, ``nih``, ``chexpert`` or ``dicom-folder``.

    ``synthetic`` and ``dicom-folder`` read the same ``labels.csv`` layout (synthetic sets also carry
    masks); ``with_masks`` only applies to them. ``uncertain`` only applies to ``chexpert``.
    """
    if name in ("synthetic", "dicom-folder"):
        return load_imaging_dataset(
            Path(path),
            params,
            with_masks=with_masks,
            workers=workers,
            split=split,
            limit=limit,
            progress=progress,
        )
    if name == "dxassist-export":
        from training.data._adapters_export import load_export

        return load_export(Path(path), params, limit=limit, split=split, progress=progress)
    if name == "nih":
        return load_nih(Path(path), params, workers=workers, limit=limit, split=split, progress=progress)
    if name == "chexpert":
        return load_chexpert(
            Path(path),
            params,
            uncertain=uncertain,
            workers=workers,
            limit=limit,
            split=split,
            progress=progress,
        )
    raise DatasetError(f"Unknown data set {name!r}; accepted names are {', '.join(DATASETS)}.")
