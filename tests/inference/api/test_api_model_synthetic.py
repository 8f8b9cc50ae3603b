"""Every result and worklist line says whether its model was trained on synthetic data only.

The flag was filed with each result (and drove the SR's and the viewer's mark), but the JSON's ``model``
named the model, its version and sha256 only: a worklist client or an integrator reading ``/v1`` had to
guess it from the wording of a warning. A clinician must see that a result came from a model trained on
synthetic data wherever the result is shown.
"""

from __future__ import annotations

import uuid

import onnx
import tiny_models
from _api_env import Env, TestClient, make_settings

from inference.api import create_app
from inference.runtime import read_metadata, write_metadata

HOSPITAL_LINE = "vital signs of Hopital Nord's emergency department, 2025 export (n=52000)"


def _post_vitals(client: TestClient, env: Env) -> dict:
    body = {"patient": {"identifier": f"IPP-S-{uuid.uuid4().hex[:10]}"}, "heart_rate": 118, "spo2": 93}
    answer = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert answer.status_code == 201, answer.text
    return answer.json()


def _shown(client: TestClient, env: Env, result_id: str) -> list[dict]:
    """The ``model`` of the result as each JSON view shows it: the answer to a GET and its worklist line."""
    headers = env.headers("radiologist")
    read = client.get(f"/v1/results/{result_id}", headers=headers)
    assert read.status_code == 200, read.text
    worklist = client.get("/v1/worklist", params={"limit": 500}, headers=headers).json()["items"]
    [line] = [item for item in worklist if item["result_id"] == result_id]
    return [read.json()["model"], line["model"]]


def test_a_synthetic_models_result_says_so_in_its_model(client: TestClient, env: Env) -> None:
    filed = _post_vitals(client, env)  # the tiny test models are marked synthetic
    assert filed["model"]["synthetic"] is True
    for model in _shown(client, env, filed["result_id"]):
        assert model["synthetic"] is True and model["name"] == "vitals-triage"


def test_a_hospital_trained_models_result_says_it_is_not_synthetic(tmp_path) -> None:
    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    path = tiny_models.build_triage_onnx(build / "triage.onnx")
    model = onnx.load(str(path))
    write_metadata(
        model, read_metadata(model) | {"dxassist.synthetic": "false", "dxassist.training_data": HOSPITAL_LINE}
    )
    onnx.save(model, str(path))
    tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, path)
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.IMAGING_NAME, tiny_models.build_imaging_onnx(build / "i.onnx")
    )
    env = Env(tmp_path, settings)
    with TestClient(create_app(settings)) as client:
        filed = _post_vitals(client, env)
        assert filed["model"]["synthetic"] is False
        for shown in _shown(client, env, filed["result_id"]):
            assert shown["synthetic"] is False


def test_the_openapi_document_lists_the_flag_as_always_present(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    [ref] = [schema for name, schema in schemas.items() if name.startswith("ModelRef")]
    assert ref["properties"]["synthetic"]["type"] == "boolean"
    assert "synthetic" in ref["required"]
