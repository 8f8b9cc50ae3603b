"""A champion of an older ONNX contract: the server stays up, says which model and version it refused,
why, and which command fixes it, on ``/readyz`` and on a request that needs the model."""

from __future__ import annotations

import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.api._app import LOG_FILE


def test_readyz_names_the_refused_champion_and_the_command_to_run(tmp_path) -> None:
    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    old = tiny_models.build_imaging_onnx(build / "old.onnx", with_ood=False, drop_metadata=("dxassist.ood",))
    tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, old, version="3")
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "triage.onnx")
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["checks"] == {
            "models": False,
            "database": True,
            "revocations": True,
            "audit_anchor": True,
        }
        [problem] = body["problems"]
        assert problem.startswith("cxr-findings version 3 cannot be served:")
        assert "dxassist.ood" in problem and "output(s) ood" in problem
        assert "`dxassist bootstrap`" in problem

        study = new_study_uid()
        files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))]
        upload = client.post("/v1/studies", files=files, headers=Env(tmp_path, settings).headers("pacs"))
        assert upload.status_code == 503
        error = upload.json()["error"]
        assert error["code"] == "model_unavailable"
        assert "cxr-findings version 3" in error["message"] and "dxassist bootstrap" in error["message"]

    # The operator of ``dxassist serve`` reads the same sentence once in the log, not a traceback.
    log = (settings.log_dir / LOG_FILE).read_text()
    assert log.count("Refusing cxr-findings version 3: ") == 1
    assert "output(s) ood" in log and "`dxassist bootstrap`" in log
    assert "Traceback" not in log
