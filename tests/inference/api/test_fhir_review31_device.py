"""What a model was trained on, on its FHIR Device (review 31): an integrator of the shared record sees
which model made a report, and must see what data that model learned from, not where it was stored.

Champion ``cxr-findings`` version 1 is retrained on a hospital's radiographs (its ``dxassist.training_data``
line as an export of 0.2 wrote it, with a folder of the ML engineer's machine); ``vitals-triage`` is the
synthetic tiny model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device

from inference.api import create_app
from inference.runtime import read_metadata, write_metadata

EXPORTED_LINE = "dxassist-export data set at /home/ml-eng/exports/hopital-nord-2025 (n=4200 frontal images)"
HOSPITAL_LINE = "dxassist-export data set (n=4200 frontal images)"


def _retrained(path: Path) -> Path:
    model = onnx.load(str(path))
    meta = read_metadata(model) | {"dxassist.synthetic": "false", "dxassist.training_data": EXPORTED_LINE}
    write_metadata(model, meta)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("device-training-home")
    build = home / "build"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        imaging = _retrained(tiny_models.build_imaging_onnx(build / "imaging.onnx"))
        tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, imaging)
        triage = tiny_models.build_triage_onnx(build / "t.onnx")
        tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, triage)
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        # One result of each model: their Devices are filed with them.
        study = new_study_uid()
        filed = test_client.post(
            "/v1/studies",
            files=[("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))],
            headers=env.headers("pacs", facility="F1"),
        )
        assert filed.status_code == 201, filed.text
        vitals = {"patient": {"identifier": f"DV-{uuid.uuid4().hex[:8]}"}, "respiratory_rate": 22}
        filed = test_client.post("/v1/vitals", json=vitals, headers=env.headers("clinician", facility="F1"))
        assert filed.status_code == 201, filed.text
        yield test_client


def _devices(client: TestClient, env: Env) -> dict[str, dict[str, Any]]:
    response = client.get("/fhir/Device", headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    return {e["resource"]["modelNumber"]: e["resource"] for e in response.json()["entry"]}


def test_a_device_says_what_its_model_was_trained_on(client: TestClient, env: Env) -> None:
    devices = _devices(client, env)
    imaging, triage = devices["cxr-findings"], devices["vitals-triage"]
    for device in (imaging, triage):
        Device.model_validate(device)
    # The data-set line of the model file, without the folder it was read from.
    assert imaging["property"][0]["type"]["coding"][0]["code"] == "training-data"
    assert imaging["property"][0]["valueCode"][0]["text"] == HOSPITAL_LINE
    assert "was trained on dxassist-export data set (n=4200 frontal images)" in imaging["note"][0]["text"]
    # The synthetic model says so, as each of its results does.
    assert "synthetic data only" in triage["note"][0]["text"]
    assert triage["property"][0]["valueCode"][0]["text"] == (
        "tiny test model with hand-set weights (no training data)"
    )
    # A read by id says the same as the search.
    read = client.get(f"/fhir/Device/{imaging['id']}", headers=env.headers("clinician", facility="F1"))
    assert read.status_code == 200 and read.json()["note"] == imaging["note"]
    assert "/home/ml-eng" not in client.get("/fhir/Device", headers=env.headers("clinician")).text
