"""The viewer shows what a model trained on real data was trained on, whatever words its line holds.

The page hid every warning with the word "synthetic" in it (it shows its own translated banner for a
synthetic-only model): a hospital-trained model whose data-set line mentions synthetic augmentation had
its training statement hidden from the radiologist.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

import onnx
import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from _ui_live import add_account, sign_in

from inference.api import create_app
from inference.runtime import read_metadata, write_metadata

HOSPITAL_LINE = (
    "chest radiographs of Hopital Nord, 2025 export, with synthetic contrast augmentation (n=4200)"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient]]:
    home = tmp_path_factory.mktemp("training-line-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        path = tiny_models.build_imaging_onnx(home / "build" / "imaging.onnx")
        model = onnx.load(str(path))
        write_metadata(
            model,
            read_metadata(model) | {"dxassist.synthetic": "false", "dxassist.training_data": HOSPITAL_LINE},
        )
        onnx.save(model, str(path))
        tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, path)
        triage = tiny_models.build_triage_onnx(home / "build" / "t.onnx")
        tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, triage)
        env = Env(home=home, settings=settings)
        with TestClient(create_app(settings)) as client:
            yield env, client


def test_a_hospital_models_training_line_is_shown_even_with_the_word_synthetic(
    served: tuple[Env, TestClient],
) -> None:
    env, client = served
    study = new_study_uid()
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    [line] = [w for w in response.json()["warnings"] if HOSPITAL_LINE in w]
    sign_in(client, add_account(env))
    page = client.get(f"/ui/results/{response.json()['result_id']}").text
    assert line in html.unescape(page)
    assert "trained on synthetic data only" not in page
