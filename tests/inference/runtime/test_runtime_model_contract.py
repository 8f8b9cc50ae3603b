"""A model is checked against the ONNX artifact contract when it is loaded, not at its first request."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import tiny_models

from inference.config import Settings
from inference.runtime import (
    MetadataKey,
    ModelInvalid,
    encode_metadata,
    imaging_metadata,
    load_served_model,
    read_metadata,
    write_metadata,
)
from model_registry import LocalModel


def _seed(tmp_path: Path, name: str, model_path: Path) -> LocalModel:
    tiny_models.seed_cache(tmp_path / "models", name, model_path)
    return tiny_models.read_cache(tmp_path / "models", name, "champion")


def test_tiny_imaging_model_loads_with_its_metadata(tmp_path: Path, settings: Settings) -> None:
    local = _seed(
        tmp_path, "cxr-findings", tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=32)
    )
    served = load_served_model(local, settings.runtime, expected_kind="imaging")
    meta = served.imaging_meta
    assert meta.labels == tiny_models.FIVE_CODES
    assert meta.thresholds == dict.fromkeys(tiny_models.FIVE_CODES, 0.5)
    assert meta.input_size == 32 and meta.preprocess.std == 0.25
    assert meta.temperature == 1.0
    assert served.synthetic is True
    assert (served.name, served.version, served.sha256) == ("cxr-findings", "1", local.sha256)


def test_tiny_triage_model_loads_with_its_metadata(tmp_path: Path, settings: Settings) -> None:
    local = _seed(
        tmp_path, "vitals-triage", tiny_models.build_triage_onnx(tmp_path / "t.onnx", threshold=0.25)
    )
    meta = load_served_model(local, settings.runtime, expected_kind="triage").triage_meta
    assert meta.features == tiny_models.TRIAGE_FEATURES
    assert meta.intercept == tiny_models.TRIAGE_INTERCEPT
    assert meta.threshold == 0.25
    assert meta.reference == tiny_models.TRIAGE_REFERENCE


def test_a_triage_model_giving_weight_to_an_unmeasured_sign_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    path = tiny_models.build_triage_onnx(tmp_path / "t.onnx", missing_contribution=0.02)
    local = _seed(tmp_path, "vitals-triage", path)
    with pytest.raises(ModelInvalid, match="not measured"):
        load_served_model(local, settings.runtime)


@pytest.mark.parametrize(
    "key",
    [
        "dxassist.labels",
        "dxassist.thresholds",
        "dxassist.preprocess",
        "dxassist.temperature",
        "dxassist.synthetic",
    ],
)
def test_imaging_model_missing_a_metadata_key_is_invalid(
    tmp_path: Path, settings: Settings, key: str
) -> None:
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx", drop_metadata=[key])
    local = _seed(tmp_path, "cxr-findings", path)
    with pytest.raises(ModelInvalid, match=key):
        load_served_model(local, settings.runtime)


@pytest.mark.parametrize(
    "key", ["dxassist.features", "dxassist.intercept", "dxassist.threshold", "dxassist.reference"]
)
def test_triage_model_missing_a_metadata_key_is_invalid(tmp_path: Path, settings: Settings, key: str) -> None:
    local = _seed(
        tmp_path, "vitals-triage", tiny_models.build_triage_onnx(tmp_path / "t.onnx", drop_metadata=[key])
    )
    with pytest.raises(ModelInvalid, match=key):
        load_served_model(local, settings.runtime)


def test_thresholds_must_cover_every_label(tmp_path: Path, settings: Settings) -> None:
    thresholds = dict.fromkeys(tiny_models.FIVE_CODES[:-1], 0.5)
    local = _seed(
        tmp_path, "cxr-findings", tiny_models.build_imaging_onnx(tmp_path / "m.onnx", thresholds=thresholds)
    )
    with pytest.raises(ModelInvalid, match="one threshold per label"):
        load_served_model(local, settings.runtime)


def test_a_fixed_batch_axis_is_refused(tmp_path: Path, settings: Settings) -> None:
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save_model(model, str(path))
    local = _seed(tmp_path, "cxr-findings", path)
    with pytest.raises(ModelInvalid, match="batch axis must be dynamic"):
        load_served_model(local, settings.runtime)


def test_input_size_must_match_the_preprocess_metadata(tmp_path: Path, settings: Settings) -> None:
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=64)
    model = onnx.load(str(path))
    metadata = read_metadata(model)
    preprocess = {**json.loads(metadata[MetadataKey.PREPROCESS]), "input_size": 128}
    write_metadata(model, {**metadata, **encode_metadata({MetadataKey.PREPROCESS: preprocess})})
    onnx.save_model(model, str(path))
    local = _seed(tmp_path, "cxr-findings", path)
    with pytest.raises(ModelInvalid, match="128 is required"):
        load_served_model(local, settings.runtime)


def test_a_triage_model_is_not_served_as_imaging(tmp_path: Path, settings: Settings) -> None:
    local = _seed(tmp_path, "cxr-findings", tiny_models.build_triage_onnx(tmp_path / "t.onnx"))
    with pytest.raises(ModelInvalid, match="triage model"):
        load_served_model(local, settings.runtime, expected_kind="imaging")


def test_a_changed_file_is_refused_by_its_sha256(tmp_path: Path, settings: Settings) -> None:
    local = _seed(tmp_path, "cxr-findings", tiny_models.build_imaging_onnx(tmp_path / "m.onnx"))
    local.path.write_bytes(tiny_models.build_imaging_onnx(tmp_path / "other.onnx", seed=7).read_bytes())
    with pytest.raises(ModelInvalid, match="sha256"):
        load_served_model(local, settings.runtime)


def test_a_file_that_is_not_onnx_is_invalid(tmp_path: Path, settings: Settings) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    local = _seed(tmp_path, "cxr-findings", junk)
    with pytest.raises(ModelInvalid, match="could not load"):
        load_served_model(local, settings.runtime)


def test_an_imaging_model_without_an_ood_guard_is_refused(tmp_path: Path, settings: Settings) -> None:
    """A model exported before the OOD guard (no ``dxassist.ood``) must not be served: it would score
    images it does not know as confidently as phantoms."""
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx", drop_metadata=["dxassist.ood"])
    local = _seed(tmp_path, "cxr-findings", path)
    with pytest.raises(ModelInvalid, match="dxassist.ood"):
        load_served_model(local, settings.runtime, expected_kind="imaging")


def test_what_the_artifact_module_writes_the_server_reads_back_unchanged(
    tmp_path: Path, settings: Settings
) -> None:
    """Export (training, benchmarks, test models) and the loader share one module: every field round-trips."""
    thresholds = {code: 0.1 + 0.1 * i for i, code in enumerate(tiny_models.FIVE_CODES)}
    path = tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=32)
    model = onnx.load(str(path))
    written = imaging_metadata(
        labels=tiny_models.FIVE_CODES,
        thresholds=thresholds,
        temperature=1.7,
        preprocess={"input_size": 32, "mean": 0.4, "std": 0.2, "window_percentiles": [2.0, 98.0]},
        synthetic=False,
        training_data="a named data set",
        config={"profile": "test"},
        ood={"method": "m", "threshold": 3.5, "pass_rate": 0.99},
    )
    write_metadata(model, written)
    onnx.save_model(model, str(path))
    assert read_metadata(path) == written
    meta = load_served_model(_seed(tmp_path, "cxr-findings", path), settings.runtime).imaging_meta
    assert meta.thresholds == pytest.approx(thresholds) and meta.temperature == 1.7
    params = meta.preprocess
    assert (params.mean, params.std, tuple(params.window_percentiles)) == (0.4, 0.2, (2.0, 98.0))
    assert (meta.ood.method, meta.ood.threshold, meta.ood.pass_rate) == ("m", 3.5, 0.99)
    assert not meta.synthetic and meta.training_data == "a named data set"


def _with_ood(path: Path, **extra: object) -> Path:
    model = onnx.load(str(path))
    meta = read_metadata(model)
    ood = json.loads(meta["dxassist.ood"]) | extra
    write_metadata(model, meta | {"dxassist.ood": json.dumps(ood)})
    onnx.save(model, str(path))
    return path


def test_a_model_exported_with_the_single_lateral_contrast_loads_and_scores_as_before(
    tmp_path: Path, settings: Settings
) -> None:
    """Versions exported before the guard knew a list of neighbours carry one ``contrast`` object (the
    lateral term): they still load, say they refuse laterals, and score exactly what their graph says."""
    import numpy as np
    import onnxruntime as ort

    from inference.runtime import score_batch

    contrast = {"neighbour": "lateral chest phantoms tagged frontal", "fitted_on": 160, "weight": 10.0}
    path = _with_ood(tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=32), contrast=contrast)
    served = load_served_model(
        _seed(tmp_path, "cxr-findings", path), settings.runtime, expected_kind="imaging"
    )
    ood = served.imaging_meta.ood
    assert ood.neighbours == ("lateral",) and ood.lateral_contrast and not ood.refuses_mirrored
    assert ood.weights == {"lateral": 10.0}
    assert ood.threshold == tiny_models.DEFAULT_OOD_THRESHOLD
    x = np.random.default_rng(3).normal(size=(2, 1, 32, 32)).astype(np.float32)
    (graph,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["ood"], {"image": x})
    np.testing.assert_allclose([o.ood_score for o in score_batch(served, x)], graph, rtol=1e-6)


def test_a_model_listing_its_neighbours_says_which_it_refuses(tmp_path: Path, settings: Settings) -> None:
    listed = [
        {
            "name": "lateral",
            "neighbour": "lateral chest phantoms tagged frontal",
            "fitted_on": 160,
            "weight": 10.0,
        },
        {
            "name": "mirrored",
            "neighbour": "training frontal films flipped left-right",
            "fitted_on": 9,
            "weight": 10.0,
        },
    ]
    path = _with_ood(tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=32), neighbours=listed)
    ood = load_served_model(_seed(tmp_path, "cxr-findings", path), settings.runtime).imaging_meta.ood
    assert ood.neighbours == ("lateral", "mirrored") and ood.lateral_contrast and ood.refuses_mirrored
    assert ood.weights == {"lateral": 10.0, "mirrored": 10.0}
    bad = _with_ood(
        tiny_models.build_imaging_onnx(tmp_path / "b.onnx", input_size=32), neighbours=["mirrored"]
    )
    with pytest.raises(ModelInvalid, match="neighbours"):
        load_served_model(_seed(tmp_path, "cxr-findings", bad), settings.runtime)
