"""What each served model was trained on, where users look: ``GET /v1/models`` and the results' warnings.

Champion ``cxr-findings`` version 1 was retrained on a hospital's radiographs (``dxassist.synthetic``
``false``, its ``dxassist.training_data`` line naming the data); champion ``vitals-triage`` version 1 is the
synthetic tiny model. Both are read from the ONNX metadata the export wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.runtime import read_metadata, write_metadata

# As an export of 0.2 wrote it: with the folder the data was read from on the ML engineer's machine.
EXPORTED_LINE = "dxassist-export data set at /home/ml-eng/exports/hopital-nord-2025 (n=4200 frontal images)"
HOSPITAL_LINE = "dxassist-export data set (n=4200 frontal images)"


def _retrained(path: Path, line: str) -> Path:
    """A tiny imaging model whose metadata says it was trained on a hospital's data, not synthetic."""
    model = onnx.load(str(path))
    meta = read_metadata(model) | {"dxassist.synthetic": "false", "dxassist.training_data": line}
    write_metadata(model, meta)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("training-data-home")
    build = home / "build"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        cache = settings.model_cache
        imaging = _retrained(tiny_models.build_imaging_onnx(build / "imaging.onnx"), EXPORTED_LINE)
        tiny_models.seed_cache(cache, tiny_models.IMAGING_NAME, imaging)
        tiny_models.seed_cache(
            cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
        )
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def test_models_say_what_each_was_trained_on_beside_the_contract_fields(client: TestClient, env: Env) -> None:
    response = client.get("/v1/models", headers=env.headers("clinician"))

    assert response.status_code == 200, response.text
    models = {m["name"]: m for m in response.json()["models"]}
    imaging, triage = models["cxr-findings"], models["vitals-triage"]
    for model in (imaging, triage):  # the contract's fields are still there
        assert {"name", "version", "alias", "sha256", "provider"} <= set(model)
        assert model["version"] == "1" and model["alias"] == "champion" and len(model["sha256"]) == 64
    assert imaging["synthetic"] is False
    assert imaging["training_data"] == HOSPITAL_LINE  # what it was trained on, not where it was read from
    assert "/home/ml-eng" not in response.text
    assert triage["synthetic"] is True
    assert triage["training_data"] == "tiny test model with hand-set weights (no training data)"


def test_a_result_of_a_model_retrained_on_hospital_data_says_what_it_was_trained_on(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )

    assert response.status_code == 201, response.text
    warnings = response.json()["warnings"]
    [said] = [w for w in warnings if HOSPITAL_LINE in w]
    assert "cxr-findings version 1" in said
    assert "/home/ml-eng" not in response.text  # the training machine's folder
    # Not taken for a synthetic model's warning (outputs and pages look for that word).
    assert not any("synthetic" in w.lower() for w in warnings)

    # The synthetic triage model's results still say that, as before.
    body = {"patient": {"identifier": f"TD-{uuid.uuid4().hex[:10]}"}, "respiratory_rate": 18, "spo2": 97}
    vitals = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert vitals.status_code == 201, vitals.text
    assert any("trained on synthetic data only" in w for w in vitals.json()["warnings"])
