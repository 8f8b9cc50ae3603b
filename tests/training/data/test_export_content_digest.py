"""The content digest of a ``dxassist-export``: written by the export, checked by the reader.

Two runs were said to use "the same data" when their ``dataset`` names matched, and an export carried
nothing that named its content: a later export, or a hand-edited one, read as the same data set.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.preprocess import PreprocessParams
from inference.services._training_export import content_digest as written_digest
from training.data import FINDINGS, DatasetError, load_dataset
from training.data._adapters_export import content_digest, export_content_digest

PARAMS = PreprocessParams(input_size=32)


def _export(root: Path, n: int = 4) -> Path:
    """An export folder as ``export-training-set`` lays it out, its manifest stamped by the writer's code."""
    (root / "inputs").mkdir(parents=True)
    rng = np.random.default_rng(7)
    lines = ["file,split,view," + ",".join(FINDINGS)]
    for i in range(n):
        name = f"inputs/ref{i:02d}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, tensor=rng.standard_normal((32, 32)).astype(np.float16), mean=0.5, std=0.25)
        (root / name).write_bytes(buffer.getvalue())
        lines.append(
            f"{name},{('train', 'val')[i % 2]},,"
            + ",".join("1" if j == i else "0" for j in range(len(FINDINGS)))
        )
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "verdicts.csv").write_text("result_ref,finding\n", encoding="utf-8")
    manifest = {"format": "dxassist-export", "inputs": n, "content_sha256": written_digest(root)}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return root


def test_the_digest_is_of_the_content_not_of_where_or_when_it_was_written(tmp_path: Path) -> None:
    first = _export(tmp_path / "a")
    second = tmp_path / "elsewhere" / "b"
    shutil.copytree(first, second)  # new folder, new timestamps, same files
    digest = json.loads((first / "manifest.json").read_text())["content_sha256"]

    assert len(digest) == 64
    assert export_content_digest(first) == export_content_digest(second) == digest
    assert content_digest(second) == written_digest(second) == digest  # writer and reader agree

    relabelled = tmp_path / "c"
    shutil.copytree(first, relabelled)
    labels = relabelled / "labels.csv"
    labels.write_text(labels.read_text().replace(",train,", ",val,", 1))
    assert written_digest(relabelled) != digest  # another split is other data


def test_an_export_whose_files_no_longer_match_their_manifest_is_refused(tmp_path: Path) -> None:
    root = _export(tmp_path / "export")
    assert len(load_dataset("dxassist-export", root, PARAMS)) == 4

    labels = root / "labels.csv"
    labels.write_text(labels.read_text().replace(",train,", ",val,", 1))
    with pytest.raises(DatasetError, match="do not match its manifest") as refused:
        load_dataset("dxassist-export", root, PARAMS)
    assert "Export again" in str(refused.value)

    labels.write_text(labels.read_text().replace(",val,", ",train,", 1))  # as exported again
    assert len(load_dataset("dxassist-export", root, PARAMS)) == 4
    (root / "inputs" / "extra.npz").write_bytes((root / "inputs" / "ref00.npz").read_bytes())
    with pytest.raises(DatasetError, match="do not match its manifest"):
        load_dataset("dxassist-export", root, PARAMS)


def test_an_export_written_before_the_digest_is_read_without_one(tmp_path: Path) -> None:
    root = _export(tmp_path / "export")
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["content_sha256"]
    (root / "manifest.json").write_text(json.dumps(manifest))

    assert export_content_digest(root) is None
    assert len(load_dataset("dxassist-export", root, PARAMS)) == 4
