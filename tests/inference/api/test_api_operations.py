"""Health, readiness, metrics, error shape for unknown routes, request limits and PHI-free logs."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
import tiny_models
from _api_dicom import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.api._app import LOG_FILE
from inference.security import issue_token


def _headers(settings, role: str, facility: str | None = "F1") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, subject='ops', role=role, facility=facility)}"}


def test_readyz_is_503_until_models_are_cached_then_200(tmp_path) -> None:
    settings = make_settings(tmp_path, model_watch_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        before = client.get("/readyz")
        assert before.status_code == 503
        assert before.json()["checks"] == {
            "models": False,
            "database": True,
            "revocations": True,
            "audit_anchor": True,
        }
        # Scoring needs the model: 503 in the error shape, not a crash.
        vitals = client.post(
            "/v1/vitals",
            json={"patient": {"identifier": "R-1"}},
            headers=_headers(settings, "clinician"),
        )
        assert vitals.status_code == 503 and vitals.json()["error"]["code"] == "model_unavailable"
        tiny_models.seed_both(settings.model_cache, tmp_path / "build")
        deadline = time.monotonic() + 20
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model watcher never loaded the seeded models"
            time.sleep(0.1)
        assert client.get("/readyz").json()["status"] == "ok"


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message"}
    wrong_method = client.delete("/healthz")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_metrics_count_requests_by_route_template_and_rejections_by_code(
    client: TestClient, env: Env
) -> None:
    headers = env.headers("radiologist")
    client.get(f"/v1/results/{uuid.uuid4()}", headers=headers)
    client.post(
        "/v1/studies",
        files=[("files", ("a", b"junk" * 50, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'dxassist_requests_total{method="GET",route="/v1/results/{result_id}",status="404"}' in text
    assert 'dxassist_request_seconds_bucket{le="0.005",route="/v1/results/{result_id}"}' in text
    assert 'dxassist_rejected_inputs_total{code="not_dicom"}' in text
    # Concrete ids never become label values.
    assert "/v1/results/" + "0" * 8 not in text


def test_every_answer_carries_the_server_s_own_request_id(client: TestClient) -> None:
    first = client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
    again = client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
    assert len(first) == len(again) == 32 and first != again
    assert len(client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"]) == 32


def test_bodies_over_the_limit_are_413_announced_or_streamed(tmp_path) -> None:
    settings = make_settings(tmp_path, max_request_bytes=20_000)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")  # ~33 kB
    headers = _headers(settings, "pacs", "F1")
    with TestClient(create_app(settings)) as client:
        announced = client.post(
            "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
        )
        assert announced.status_code == 413
        assert announced.json()["error"]["code"] == "payload_too_large"

        def chunks():
            for start in range(0, len(blob), 4096):
                yield blob[start : start + 4096]

        streamed = client.post(
            "/dicomweb/studies",
            content=chunks(),
            headers={**headers, "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
        assert streamed.status_code == 413
        assert client.get("/healthz").status_code == 200


def test_a_full_run_logs_no_patient_data(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    vitals_id, vitals_name = "IPP-LOG-55120", "Lumbago^Philippa"
    with TestClient(create_app(settings)) as client:
        pacs = _headers(settings, "pacs", "F1")
        reader = _headers(settings, "radiologist")
        study = new_study_uid()
        files = [
            ("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))
        ]
        result = client.post("/v1/studies", files=files, headers=pacs).json()
        client.get(f"/v1/results/{result['result_id']}", headers=reader)
        client.get(f"/v1/studies/{study}/result", headers=reader)
        ct = new_study_uid()
        client.post(
            "/v1/studies",
            files=[
                ("files", ("b.dcm", chest_dicom(study=ct, sop=f"{ct}.1", modality="CT"), "application/dicom"))
            ],
            headers=pacs,
        )
        client.post(
            "/v1/vitals",
            json={
                "patient": {"identifier": vitals_id, "name": vitals_name, "birth_date": "1938-12-24"},
                "heart_rate": 80,
            },
            headers=_headers(settings, "clinician"),
        )
        client.post(
            "/v1/vitals",
            json={"patient": {"identifier": vitals_id}, "heart_rate": vitals_id},
            headers=_headers(settings, "clinician"),
        )
        client.get("/fhir/Patient", params={"identifier": PATIENT_ID}, headers=reader)
        client.get("/fhir/Patient", params={"identifier": vitals_id}, headers=reader)
        client.get(f"/fhir/Patient?identifier={vitals_id}&bogus=1", headers=reader)
    log_file = settings.log_dir / LOG_FILE
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert any(json.loads(line).get("route") == "/fhir/{resource_type}" for line in lines)
    # httpx is the test's own client (it logs the URLs it requests); everything else is the server.
    server_records = [r for r in caplog.records if not r.name.startswith("httpx")]
    assert any(r.name == "inference.api.access" for r in server_records)
    # Every attribute of each record (extras included), but the clock and process numbers a record
    # carries: about 40 random digits each, where an 8-digit needle turns up by chance.
    noise = {"created", "msecs", "relativeCreated", "thread", "process", "taskName"}
    server_text = "\n".join(
        caplog.handler.format(r) + repr({k: v for k, v in r.__dict__.items() if k not in noise})
        for r in server_records
    )
    captured = server_text + "\n".join(lines)
    family, given = PATIENT_NAME.split("^")
    for secret in (
        PATIENT_ID,
        family,
        given,
        BIRTH_DATE,
        "1941-03-17",
        vitals_id,
        "Lumbago",
        "Philippa",
        "1938-12-24",
        "19381224",
    ):
        assert secret not in captured, secret
