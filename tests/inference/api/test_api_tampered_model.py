"""A champion whose file no longer matches its recorded sha256: ``/readyz`` says which model, the 503 why.

The cache deletes a file that fails its check and the server refuses to serve it, which is right; but the
ML engineer looking at ``/readyz`` (503) saw an empty ``problems`` list, and a request that needed the
model was told to retry later, as if it were still loading. Both now say which model could not be
fetched and that the server log says why (the sha256 check, once).
"""

from __future__ import annotations

import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.api._app import LOG_FILE


def test_readyz_names_the_champion_whose_file_changed(tmp_path) -> None:
    settings = make_settings(tmp_path)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    cached = settings.model_cache / tiny_models.IMAGING_NAME / "1" / "model.onnx"
    cached.write_bytes(cached.read_bytes() + b"\0")  # changed after it was verified and cached

    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        [problem] = ready.json()["problems"]
        assert problem == (
            "Model cxr-findings is not loaded: its 'champion' version could not be fetched. The server log "
            "says why."
        )  # /readyz answers without a login: the reason goes to the log

        study = new_study_uid()
        files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))]
        upload = client.post("/v1/studies", files=files, headers=Env(tmp_path, settings).headers("pacs"))
        assert upload.status_code == 503
        message = upload.json()["error"]["message"]
        # Not "retry later" as if it were still loading: which model, where the reason is, what to do (the
        # cache's own words, its folders and checks, stay in the log).
        assert message == (
            "Model cxr-findings is not loaded: its 'champion' version could not be fetched. The server log "
            "says why; an administrator can make the model registry reachable or register a version "
            "(`dxassist bootstrap`)."
        )
        assert str(tmp_path) not in upload.text

    # The operator reads why in the server log: the file failed its sha256 check.
    log = (settings.log_dir / LOG_FILE).read_text()
    assert "Could not fetch cxr-findings@champion" in log and "sha256" in log
