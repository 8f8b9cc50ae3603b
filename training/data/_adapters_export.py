"""The ``dxassist-export`` data set: model inputs the server kept, labelled by the hospital's readers.

Written by ``dxassist export-training-set --out DIR`` (:mod:`inference.services._training_export`):
``labels.csv`` (``file,split,view,<findings>,...``) and ``inputs/<ref>.npz``, each the windowed,
letterboxed, normalised model input of one analysed radiograph as float16 with the ``mean`` and ``std``
that normalised it. Loading undoes that normalisation, resizes the square input to this run's input size
when it differs (area/bilinear, as the server's preprocessing resizes) and normalises with this run's
parameters, so the tensors are those the server would compute at this run's size, to float16 precision.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.data._imaging import DatasetError, ImagingArrays
from training.data._phantom import FINDINGS

if TYPE_CHECKING:
    from inference.preprocess import PreprocessParams

EXPORT_FORMAT = "dxassist-export"


def export_reader_labels(root: Path) -> int:
    """The number of reader labels an export holds (its manifest's ``reader_labels``; 0 when absent)."""
    try:
        return int(
            json.loads((Path(root) / "manifest.json").read_text(encoding="utf-8")).get("reader_labels", 0)
        )
    except (OSError, ValueError, TypeError):
        return 0


def _tensor(path: Path, params: PreprocessParams) -> np.ndarray:
    from inference.preprocess import resize

    try:
        with np.load(path, allow_pickle=False) as npz:
            kept = npz["tensor"].astype(np.float32)
            unit = kept * float(npz["std"]) + float(npz["mean"])
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"{path.name} is not a model input written by export-training-set.") from e
    if unit.ndim != 2 or unit.shape[0] != unit.shape[1] or not np.isfinite(unit).all():
        raise DatasetError(f"{path.name} holds a {unit.shape} array; a square, finite image is expected.")
    size = params.input_size
    if unit.shape != (size, size):
        unit = resize(unit, (size, size))
    return ((unit - params.mean) / params.std).astype(np.float32)[None]


def load_export(
    root: Path,
    params: PreprocessParams,
    *,
    limit: int | None = None,
    split: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImagingArrays:
    """Load a ``dxassist-export`` folder (see the module docstring)."""
    root = Path(root)
    table = root / "labels.csv"
    if not table.is_file() or not (root / "inputs").is_dir():
        raise DatasetError(
            f"{root} is not a '{EXPORT_FORMAT}' data set (labels.csv and inputs/ written by "
            "`dxassist export-training-set --out`)."
        )
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "split", *FINDINGS} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"labels.csv lacks the columns {sorted(missing)}.")
        rows = [row for row in reader if split is None or row["split"] == split]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DatasetError(f"{root}/labels.csv has no labelled input; give readers' verdicts, then export.")
    x = np.zeros((len(rows), 1, params.input_size, params.input_size), dtype=np.float32)
    y = np.zeros((len(rows), len(FINDINGS)), dtype=np.float32)
    for i, row in enumerate(rows):
        path = (root / row["file"]).resolve()
        if root.resolve() not in path.parents or not path.is_file():
            raise DatasetError(f"labels.csv line {i + 2}: {row['file']!r} is not a file of the export.")
        x[i] = _tensor(path, params)
        y[i] = [float(row[code] == "1") for code in FINDINGS]
        if progress is not None:
            progress(i + 1, len(rows))
    return ImagingArrays(
        x=x,
        y=y,
        masks=None,
        files=[row["file"] for row in rows],
        views=[row.get("view", "") or "" for row in rows],
        splits=[row["split"] for row in rows],
    )
