"""The committed demo studies are exactly what the recipe rebuilds, and they read like real studies."""

import hashlib
from pathlib import Path

import pytest

from inference.dicom import Limits, read_instance
from training.data import FINDINGS, load_dataset
from training.data.seeds import build_seeds, load_recipe, main

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
STUDIES = SEEDS / "studies"
LIMITS = Limits(max_instance_bytes=8 * 1024 * 1024, max_pixels=4 * 1024 * 1024, max_instances=8)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_recipe_rebuilds_the_committed_files_byte_for_byte(tmp_path):
    assert main(["--out", str(tmp_path / "out")]) == 0
    assert _digests(tmp_path / "out") == _digests(STUDIES)


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
