"""``/readyz`` answers without a login: it says which model is missing, never the raw fetch error.

A fetch error names the registry host and the server's cache paths; a probe, a load balancer or anyone
on the network reading ``/readyz`` learns only which model is not served and that the log says why. The
operator finds the reason in the server log; a signed-in caller that needed the model reads which model
is missing and what an administrator can do (test_api_model_unavailable_message.py).
"""

from __future__ import annotations

import tiny_models
from _api_env import Env, TestClient, make_settings

from inference.api import create_app
from inference.api._app import LOG_FILE


def test_readyz_names_the_unfetched_model_without_the_reason(tmp_path) -> None:
    settings = make_settings(tmp_path)  # an empty model cache and no registry
    cache = str(settings.model_cache)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        problems = ready.json()["problems"]
        assert problems == [
            "Model cxr-findings is not loaded: its 'champion' version could not be fetched. The server log "
            "says why.",
            "Model vitals-triage is not loaded: its 'champion' version could not be fetched. The server log "
            "says why.",
        ]
        assert not any(cache in p or str(tmp_path) in p for p in problems)

        vitals = client.post(
            "/v1/vitals",
            json={"patient": {"identifier": "R-1"}, "heart_rate": 70},
            headers=Env(tmp_path, settings).headers("clinician"),
        )
        assert vitals.status_code == 503
        message = vitals.json()["error"]["message"]
        assert message.startswith("Model vitals-triage is not loaded: its 'champion' version could not be")
        assert "bootstrap" in message  # what to run, for a caller who needs the model

    log = (settings.log_dir / LOG_FILE).read_text()
    assert "Could not fetch vitals-triage@champion" in log and cache in log


def test_readyz_names_a_champion_onnx_runtime_cannot_load_without_the_cache_path(tmp_path) -> None:
    # ONNX Runtime's own error quotes the file's full path ("Load model from /.../model.onnx failed"):
    # /readyz said which folder the server keeps its models in to anyone on the network.
    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    build.mkdir()
    broken = build / "broken.onnx"
    broken.write_bytes(b"not an ONNX model " * 8)
    tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, broken, version="3")
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "triage.onnx")
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        [problem] = ready.json()["problems"]
        assert problem.startswith("cxr-findings version 3 cannot be served: ONNX Runtime could not load")
        assert "model.onnx" in problem and "`dxassist bootstrap`" in problem
        assert str(tmp_path) not in ready.text
