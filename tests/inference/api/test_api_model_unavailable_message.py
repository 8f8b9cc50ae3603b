"""A request that needs a model the server could not fetch gets one stable sentence, never the fetch error.

The fetch error names the server's model cache folder, the registry's address and the cache's inner
workings (sha256 checks, manifests). A signed-in caller (a nurse's app posting vital signs, a PACS sending
a study) read it word for word in the 503 answer; it now reads which model is unavailable, that the
server log says why and what an administrator can do, as ``/readyz`` already says it. The operator still
finds the reason, once, in the server log.
"""

from __future__ import annotations

import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.api._app import LOG_FILE

TRIAGE_UNAVAILABLE = (
    "Model vitals-triage is not loaded: its 'champion' version could not be fetched. The server log says "
    "why; an administrator can make the model registry reachable or register a version (`dxassist "
    "bootstrap`)."
)


def test_a_signed_in_caller_reads_which_model_is_unavailable_not_the_fetch_error(tmp_path) -> None:
    settings = make_settings(tmp_path)  # an empty model cache and no registry
    env = Env(tmp_path, settings)
    with TestClient(create_app(settings)) as client:
        vitals = client.post(
            "/v1/vitals",
            json={"patient": {"identifier": "R-1"}, "heart_rate": 70},
            headers=env.headers("clinician"),
        )
        assert vitals.status_code == 503
        error = vitals.json()["error"]
        assert error["code"] == "model_unavailable"
        assert error["message"] == TRIAGE_UNAVAILABLE
        assert vitals.headers["Retry-After"] == "30"

        study = new_study_uid()
        files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))]
        upload = client.post("/v1/studies", files=files, headers=env.headers("pacs"))
        assert upload.status_code == 503
        message = upload.json()["error"]["message"]
        assert message == TRIAGE_UNAVAILABLE.replace("vitals-triage", "cxr-findings")

        # Nothing of the server's folders or of the registry's configuration reaches a caller.
        for answer in (vitals, upload):
            assert str(tmp_path) not in answer.text
            assert "registry client" not in answer.text and "cache" not in answer.text

    log = (settings.log_dir / LOG_FILE).read_text()
    assert "Could not fetch vitals-triage@champion" in log and str(settings.model_cache) in log


def test_a_model_whose_cached_file_was_removed_is_unavailable_in_the_same_words(tmp_path) -> None:
    # The cache's own error quotes the version's folder ("its file or manifest is missing in /...").
    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.IMAGING_NAME, tiny_models.build_imaging_onnx(build / "i.onnx")
    )
    triage = tiny_models.seed_cache(
        settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
    )
    triage.unlink()
    with TestClient(create_app(settings)) as client:
        vitals = client.post(
            "/v1/vitals",
            json={"patient": {"identifier": "R-2"}, "heart_rate": 70},
            headers=Env(tmp_path, settings).headers("clinician"),
        )
        assert vitals.status_code == 503
        assert vitals.json()["error"]["message"] == TRIAGE_UNAVAILABLE
        assert str(tmp_path) not in vitals.text

    log = (settings.log_dir / LOG_FILE).read_text()
    assert "file or manifest is missing" in log
