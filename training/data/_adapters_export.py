"""The ``dxassist-export`` data set: model inputs the server kept, labelled by the hospital's readers.

Written by ``dxassist export-training-set --out DIR`` (:mod:`inference.services._training_export`):
``labels.csv`` (``file,split,view,<findings>,...``) and ``inputs/<ref>.npz``, each the windowed,
letterboxed, normalised model input of one analysed radiograph as float16 with the ``mean`` and ``std``
that normalised it. Loading undoes that normalisation, resizes the square input to this run's input size
when it differs (area/bilinear, as the server's preprocessing resizes) and normalises with this run's
parameters, so the tensors are those the server would compute at this run's size, to float16 precision.

``manifest.json`` carries ``content_sha256``, the digest of the export's other files (their bytes and
names, in sorted order); an export whose files no longer match it is refused before anything is read,
and the digest names the data set's content in the registry (two versions trained on the same content
carry the same digest). An older export without it is read as before, with no digest.
"""

from __future__ import annotations

import csv
import hashlib
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


def content_digest(root: Path) -> str:
    """The sha256 of an export's content, as ``export-training-set`` writes it into ``manifest.json``: over
    one line ``<sha256 of the file>  <relative path>`` per file under ``root`` but ``manifest.json``, in the
    sorted order of the paths (POSIX separators)."""
    root = Path(root)
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    files.pop("manifest.json", None)
    lines = (f"{hashlib.sha256(files[name].read_bytes()).hexdigest()}  {name}\n" for name in sorted(files))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def export_content_digest(root: Path) -> str | None:
    """The content digest of an export (its manifest's ``content_sha256``), checked against its files;
    ``None`` for an export written before the digest (no manifest, or none in it).

    Raises:
        DatasetError: The files do not match the manifest's digest (changed, added or removed since the
            export), or the manifest is not readable JSON.
    """
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is not the JSON manifest export-training-set writes.") from e
    expected = manifest.get("content_sha256") if isinstance(manifest, dict) else None
    if expected is None:
        return None
    actual = content_digest(root)
    if actual != expected:
        raise DatasetError(
            f"The files of {root} do not match its manifest: their content digest is {actual[:12]}..., "
            f"the manifest's content_sha256 is {str(expected)[:12]}...; a file was changed, added or removed "
            "since `dxassist export-training-set` wrote it. Export again, or train on the files as they "
            "were exported."
        )
    return actual


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
    """Load a ``dxassist-export`` folder (see the module docstring).

    Raises:
        DatasetError: It is not an export, or its files do not match its manifest's content digest.
    """
    root = Path(root)
    table = root / "labels.csv"
    if not table.is_file() or not (root / "inputs").is_dir():
        raise DatasetError(
            f"{root} is not a '{EXPORT_FORMAT}' data set (labels.csv and inputs/ written by "
            "`dxassist export-training-set --out`)."
        )
    export_content_digest(root)
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
