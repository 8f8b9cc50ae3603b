"""Whether a result's model was trained on synthetic data is a flag filed with the result, not a word
looked for in its warnings.

The SR sent to the PACS and the viewer page mark a synthetic model's result. They took the word
"synthetic" in any warning for that mark: a model trained on a hospital's data whose training-data line
mentions synthetic augmentation was marked "synthetic only" in the PACS, and a synthetic model's warning
reworded or translated would have lost the mark.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import onnx
import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from _stow_destination import Received, stow_destination

from inference.api import create_app
from inference.api.ui._views import viewer_model
from inference.record import ImagingResult, ModelInfo, PatientRef
from inference.runtime import read_metadata, write_metadata

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
# A hospital's data: the line mentions synthetic augmentation, the model is not synthetic-only.
HOSPITAL_LINE = (
    "chest radiographs of Hopital Nord, 2025 export, with synthetic contrast augmentation (n=4200)"
)
SYNTHETIC_MARK = "trained on synthetic data only"


@pytest.fixture(scope="module")
def delivering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, Received]]:
    """A server with a hospital-trained imaging model whose only destination is a STOW-RS endpoint."""
    home = tmp_path_factory.mktemp("synthetic-flag-home")
    build = home / "build"
    with stow_destination() as (url, received), pytest.MonkeyPatch.context() as mp:
        destination = {"name": "vna", "kind": "stowrs", "url": url, "token": "t", "timeout_seconds": 5}
        mp.setenv("DXASSIST_HOME", str(home))
        mp.setenv("DXASSIST_DESTINATIONS", json.dumps([destination]))
        mp.setenv("DXASSIST_DELIVERY_POLL_SECONDS", "0.1")
        mp.setenv("DXASSIST_DELIVERY_BACKOFF_SECONDS", "0.2")
        settings = make_settings(home)
        path = tiny_models.build_imaging_onnx(build / "imaging.onnx")
        model = onnx.load(str(path))
        write_metadata(
            model,
            read_metadata(model) | {"dxassist.synthetic": "false", "dxassist.training_data": HOSPITAL_LINE},
        )
        onnx.save(model, str(path))
        tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, path)
        tiny_models.seed_cache(
            settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
        )
        env = Env(home=home, settings=settings)
        with TestClient(create_app(settings)) as client:
            yield env, client, received


def _sr(client: TestClient, env: Env, received: Received, result_id: str, study: str) -> Any:
    deadline = time.monotonic() + 60  # a bound on a busy CI machine, as the suite's other delivery waits
    while True:
        result = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist")).json()
        if result["deliveries"] and all(d["state"] == "sent" for d in result["deliveries"]):
            break
        assert time.monotonic() < deadline, result["deliveries"]
        time.sleep(0.1)
    [sr] = [ds for ds in received.datasets() if ds.StudyInstanceUID == study and ds.SOPClassUID == SR_CLASS]
    return sr


def test_a_hospital_trained_model_is_not_marked_synthetic_in_the_pacs(
    delivering: tuple[Env, TestClient, Received],
) -> None:
    env, client, received = delivering
    study = new_study_uid()
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    assert any(HOSPITAL_LINE in w for w in response.json()["warnings"])  # the word is in a warning

    sr = _sr(client, env, received, response.json()["result_id"], study)
    [equipment] = [e for e in sr.ContributingEquipmentSequence if "AI analysis" in e.ContributionDescription]
    assert "cxr-findings version 1" in equipment.ContributionDescription
    assert SYNTHETIC_MARK not in equipment.ContributionDescription


def test_a_synthetic_model_is_marked_whatever_its_warnings_say() -> None:
    now = datetime.now(UTC)
    result = ImagingResult(
        result_id="r", patient=PatientRef(id="p", identifier="SYN-1"),
        model=ModelInfo(name="cxr-findings", version="1", synthetic=True), priority="routine",
        status="open", warnings=("Ce modèle a été entraîné sur des données synthétiques uniquement.",),
        created_at=now, rationale={"en": "."}, study_instance_uid="1.2", findings=(), assessable=True,
        ood=None,
    )  # fmt: skip
    assert viewer_model(result, language="fr", verdicts={})["synthetic"] is True
    real = ImagingResult(**{**_fields(result), "model": ModelInfo(name="cxr-findings", version="4")})
    assert viewer_model(real, language="en", verdicts={})["synthetic"] is False


def _fields(result: ImagingResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in result.__dataclass_fields__}
