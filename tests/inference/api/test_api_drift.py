"""GET /v1/models/drift and /metrics: drift of the served imaging model version, from filed results."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app

# A reference whose every bin lies far below what the tiny model scores: each result lands in the top bin
# of every signal, as a stream from another population would.
_BINS = {"edges": [1e-9, 2e-9], "fractions": [0.4, 0.3, 0.3]}
REFERENCE = {
    "method": "psi-quantile-bins",
    "bins": 3,
    "n": 300,
    "signals": {"ood": _BINS, **{f"p_{code}": _BINS for code in tiny_models.FIVE_CODES}},
}
MIN_OBSERVATIONS = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home, drift_min_observations=MIN_OBSERVATIONS, drift_window=50)
        build = home / "build"
        # version 7: its gauges are not shared with the other test modules' version 1 in this process
        imaging = tiny_models.build_imaging_onnx(build / "imaging.onnx", reference=REFERENCE)
        tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, imaging, version="7")
        tiny_models.seed_cache(
            settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
        )
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _upload(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    r = client.post(
        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=env.headers("pacs")
    )
    assert r.status_code == 201, r.text


def _alert_gauge(client: TestClient) -> str:
    text = client.get("/metrics").text
    return next(
        line
        for line in text.splitlines()
        if line.startswith("dxassist_drift_alert{")
        and 'version="7"' in line
        and 'model="cxr-findings"' in line
    )


def test_shifted_results_raise_the_drift_alert_in_the_report_and_metrics(
    client: TestClient, env: Env
) -> None:
    headers = env.headers("ml_engineer")
    empty = client.get("/v1/models/drift", headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json()["observations"] == 0 and empty.json()["alert"] is False

    for _ in range(MIN_OBSERVATIONS - 1):
        _upload(client, env)
    early = client.get("/v1/models/drift", headers=headers).json()
    assert early["observations"] == MIN_OBSERVATIONS - 1 and early["alert"] is False
    assert _alert_gauge(client).endswith(" 0.0")

    _upload(client, env)
    report = client.get("/v1/models/drift", headers=headers).json()
    assert (report["model"], report["version"]) == ("cxr-findings", "7")
    assert report["observations"] == MIN_OBSERVATIONS and report["reference_n"] == 300
    assert report["alert"] is True and "ood" in report["drifting"]
    assert report["psi"]["ood"] >= report["alert_level"]
    assert _alert_gauge(client).endswith(" 1.0")
    assert 'dxassist_drift_psi{model="cxr-findings",signal="ood",version="7"}' in client.get("/metrics").text


def test_the_drift_report_needs_a_token(client: TestClient) -> None:
    assert client.get("/v1/models/drift").status_code == 401
