"""The committed demo studies are what the recipe rebuilds, and they read like real studies.

The phantom generator works in floating point, and numpy picks its SIMD kernels (sin, cos, power ...)
by CPU at import time: an AVX-512 machine and an AVX2 one differ in the last bit of some results, and a
pixel that sits on a rounding boundary then gets the neighbouring stored value. So a rebuild is compared
on decoded content: every header element, the labels and the masks exactly, the pixel values within
``PIXEL_TOLERANCE`` stored values on at most ``MAX_DIFFERING_FRACTION`` of the pixels (measured: at most
1 stored value on 51 of 57 116 pixels between numpy's X86_V4 kernels and its baseline ones).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from inference.dicom import Limits, read_instance
from training.data import FINDINGS, load_dataset
from training.data.seeds import build_seeds, load_recipe, main

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
STUDIES = SEEDS / "studies"
LIMITS = Limits(max_instance_bytes=8 * 1024 * 1024, max_pixels=4 * 1024 * 1024, max_instances=8)
PIXEL_TOLERANCE = 2  # stored values, out of 4096 to 65536
MAX_DIFFERING_FRACTION = 0.005
MAX_MASK_FRACTION = 0.001  # of the image: a polygon vertex moved by one ulp may flip an edge pixel


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_same_study(built: Path, committed: Path) -> None:
    ours, theirs = pydicom.dcmread(built), pydicom.dcmread(committed)
    assert ours.file_meta == theirs.file_meta, committed.name
    header = {e.tag: e for e in ours if e.keyword != "PixelData"}
    expected = {e.tag: e for e in theirs if e.keyword != "PixelData"}
    assert header == expected, committed.name
    a, b = ours.pixel_array.astype(np.int64), theirs.pixel_array.astype(np.int64)
    assert a.shape == b.shape, committed.name
    difference = np.abs(a - b)
    assert int(difference.max()) <= PIXEL_TOLERANCE, (committed.name, int(difference.max()))
    assert np.count_nonzero(difference) <= MAX_DIFFERING_FRACTION * difference.size, committed.name


def _assert_same_masks(built: Path, committed: Path) -> None:
    with np.load(built) as ours, np.load(committed) as theirs:
        assert sorted(ours.files) == sorted(theirs.files), committed.name
        for key in theirs.files:
            a, b = ours[key], theirs[key]
            assert (a.dtype, a.shape) == (b.dtype, b.shape), (committed.name, key)
            if a.dtype == bool:
                assert np.count_nonzero(a != b) <= MAX_MASK_FRACTION * a.size, (committed.name, key)
            else:
                np.testing.assert_array_equal(a, b)


def assert_rebuild_matches(out: Path) -> None:
    """The rebuilt folder holds the committed files, equal as decoded within the stated tolerance."""
    assert _files(out) == _files(STUDIES)
    for name in _files(STUDIES):
        if name.endswith(".dcm"):
            _assert_same_study(out / name, STUDIES / name)
        elif name.endswith(".npz"):
            _assert_same_masks(out / name, STUDIES / name)
        else:  # labels.csv: integers and names only
            assert (out / name).read_bytes() == (STUDIES / name).read_bytes(), name


def test_recipe_rebuilds_the_committed_files(tmp_path):
    assert main(["--out", str(tmp_path / "out")]) == 0
    assert_rebuild_matches(tmp_path / "out")


@pytest.mark.timeout(300)
def test_rebuild_with_numpy_baseline_kernels_matches_too(tmp_path):
    """The same check with numpy's CPU-specific kernels switched off: what a CPU without them computes."""
    from numpy._core import _multiarray_umath as umath

    found = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found)}
    out = tmp_path / "baseline"
    subprocess.run(
        [sys.executable, "-m", "training.data.seeds", "--out", str(out)], env=env, check=True, timeout=280
    )
    assert_rebuild_matches(out)


def test_seed_set_stays_small():
    dicoms = sorted(STUDIES.glob("*.dcm"))
    assert 1 <= len(dicoms) <= 8
    assert all(p.stat().st_size <= 200 * 1024 for p in dicoms)
    assert sum(p.stat().st_size for p in STUDIES.rglob("*") if p.is_file()) < 1024 * 1024


@pytest.fixture(scope="module")
def instances():
    return {p.name: read_instance(p.read_bytes(), limits=LIMITS) for p in sorted(STUDIES.glob("*.dcm"))}


def test_demo_studies_cover_the_variety_the_demo_needs(instances):
    recipe = load_recipe(SEEDS / "recipe.json")
    assert set(instances) == {s["file"] for s in recipe["studies"]}
    for spec in recipe["studies"]:
        inst = instances[spec["file"]]
        assert inst.photometric == spec["photometric"]
        assert inst.modality == spec["modality"]
        assert inst.view_position == spec["view"]
        assert inst.patient.issuer == "DXASSIST-SYNTH"
    assert any(i.photometric == "MONOCHROME1" for i in instances.values())
    assert {i.modality for i in instances.values()} == {"CR", "DX"}
    # One study has a lateral companion sharing its StudyInstanceUID.
    by_study: dict[str, list[str]] = {}
    for inst in instances.values():
        by_study.setdefault(inst.study_instance_uid, []).append(inst.view_position)
    assert any(sorted(views) == ["LL", "PA"] for views in by_study.values())


def test_seed_folder_loads_as_a_labelled_dicom_folder_with_masks():
    from inference.preprocess import PreprocessParams

    data = load_dataset("dicom-folder", STUDIES, PreprocessParams(input_size=64))
    recipe = load_recipe(SEEDS / "recipe.json")
    assert data.files == [s["file"] for s in recipe["studies"]]
    for row, spec in zip(data.y, recipe["studies"], strict=True):
        assert {k for k, v in zip(FINDINGS, row, strict=True) if v} == set(spec["findings"])
    assert data.masks is not None
    assert (data.masks.any(axis=(2, 3)) == data.y.astype(bool)).all()


def test_build_seeds_refuses_unknown_findings(tmp_path):
    recipe = load_recipe(SEEDS / "recipe.json")
    recipe["studies"][0] = dict(recipe["studies"][0], findings=["fracture"])
    with pytest.raises(ValueError, match="unknown findings"):
        build_seeds(tmp_path, recipe)
