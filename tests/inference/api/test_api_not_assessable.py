"""An image the imaging model refuses as out of distribution: "not assessable" everywhere a reader looks.

The tiny imaging model here has an OOD threshold so small that every image is over it; the bright square
of the test radiograph would otherwise make pneumothorax positive and the study ``critical``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app

OOD_THRESHOLD = 1e-9


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        build = home / "build"
        imaging = tiny_models.build_imaging_onnx(build / "imaging.onnx", ood_threshold=OOD_THRESHOLD)
        tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, imaging)
        tiny_models.seed_cache(
            settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
        )
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def refused(client: TestClient, env: Env) -> dict:
    study = new_study_uid()
    response = client.post(
        "/v1/studies",
        files=[
            ("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))
        ],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_the_result_says_not_assessable_with_score_and_threshold(refused: dict) -> None:
    assert refused["assessable"] is False
    assert refused["ood"]["threshold"] == pytest.approx(OOD_THRESHOLD)
    assert refused["ood"]["score"] > OOD_THRESHOLD
    assert refused["warnings"][0].startswith("not_assessable: ")
    assert "version 1" in refused["warnings"][0]
    assert refused["rationale"].startswith("Not assessable by this model")
    assert "probability" not in refused["rationale"].lower()


def test_no_finding_is_positive_no_heatmap_and_no_priority_raised(
    refused: dict, client: TestClient, env: Env
) -> None:
    assert {f["code"] for f in refused["findings"]} == set(tiny_models.FIVE_CODES)
    assert not any(f["positive"] for f in refused["findings"])
    assert all(f["heatmap"] is None and f["box"] is None for f in refused["findings"])
    assert refused["priority"] == "routine"  # the default site policy for a not-assessable study
    heatmap = client.get(
        f"/v1/results/{refused['result_id']}/heatmaps/pneumothorax.png", headers=env.headers("radiologist")
    )
    assert heatmap.status_code == 404


def test_worklist_and_stored_result_agree(refused: dict, client: TestClient, env: Env) -> None:
    headers = env.headers("radiologist", facility="F1")
    stored = client.get(f"/v1/results/{refused['result_id']}", headers=headers).json()
    assert stored["assessable"] is False and stored["ood"] == refused["ood"]
    items = client.get("/v1/worklist", headers=headers).json()["items"]
    (item,) = [i for i in items if i["result_id"] == refused["result_id"]]
    assert item["assessable"] is False and item["positive_findings"] == [] and item["priority"] == "routine"


def test_fhir_report_concludes_not_assessable_instead_of_listing_findings(
    refused: dict, client: TestClient, env: Env
) -> None:
    headers = env.headers("clinician", facility="F1")
    report = client.get(f"/fhir/DiagnosticReport/{refused['result_id']}", headers=headers)
    assert report.status_code == 200, report.text
    body = report.json()
    assert "result" not in body
    assert [c["coding"][0]["code"] for c in body["conclusionCode"]] == ["not-assessable"]
    assert body["conclusion"].startswith("Not assessable by this model")
    bundle = client.get(
        "/fhir/Observation",
        params={"patient": refused["patient"]["id"], "category": "imaging"},
        headers=headers,
    ).json()
    observations = [e["resource"] for e in bundle.get("entry", [])]
    assert observations
    for observation in observations:
        assert "valueCodeableConcept" not in observation and "interpretation" not in observation
        assert observation["dataAbsentReason"]["coding"][0]["code"] == "as-text"
