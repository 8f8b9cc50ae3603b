"""Request ids on every log event of a request, error codes in the access log, rotation or stderr only."""

from __future__ import annotations

import io
import json
import logging
import uuid
from pathlib import Path

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.api._app import LOG_FILE
from inference.observability import configure_logging
from inference.security import issue_token


def _headers(settings, role: str, **extra: str) -> dict[str, str]:
    token = issue_token(settings, subject="logs", role=role, facility="F1")
    return {"Authorization": f"Bearer {token}", **extra}


def _lines(path: Path) -> list[dict]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_dxassist_json_handler", False)]:
        root.removeHandler(handler)
        handler.close()


def test_every_event_of_a_request_carries_its_id(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    study = new_study_uid()
    files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))]
    with TestClient(create_app(settings)) as client:
        imaging = client.post(
            "/v1/studies", files=files, headers=_headers(settings, "pacs", **{"X-Request-ID": "pacs-7f3a.1"})
        )
        assert imaging.status_code == 201
        own = imaging.headers["x-request-id"]
        # The server's id, never the caller's: the caller's is kept beside it on the access line.
        assert len(own) == 32 and own != "pacs-7f3a.1"
        triage = client.post(
            "/v1/vitals",
            json={"patient": {"identifier": "LOG-REQ-1"}, "heart_rate": 130},
            headers=_headers(settings, "clinician", **{"X-Request-ID": "not a valid id"}),
        )
        assert triage.status_code == 201
        generated = triage.headers["x-request-id"]
        assert len(generated) == 32 and generated != "not a valid id"
    lines = _lines(settings.log_dir / LOG_FILE)
    by_event = {}
    for line in lines:
        by_event.setdefault(line.get("event"), []).append(line)
    (filed,) = by_event["imaging_result"]
    assert filed["request_id"] == own
    assert filed["result_id"] == imaging.json()["result_id"]
    (scored,) = by_event["triage_result"]
    assert scored["request_id"] == generated
    access = {line["request_id"]: line for line in by_event["request"]}
    assert access[own]["route"] == "/v1/studies" and access[own]["status"] == 201
    assert access[own]["client_request_id"] == "pacs-7f3a.1"
    assert "client_request_id" not in access[generated]  # "not a valid id" is not written anywhere
    assert access[generated]["route"] == "/v1/vitals"
    # Lines of the lifespan (startup, model loading) belong to no request and carry no id.
    assert all("request_id" not in line for line in by_event["startup"])


def test_the_access_log_names_the_error_code_of_refusals(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=1, rate_limit_burst=2)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    with TestClient(create_app(settings)) as client:
        reader = _headers(settings, "radiologist")
        # The reader's token has a burst of two requests; the third is throttled.
        unknown = f"/v1/results/{uuid.uuid4()}"
        statuses = [
            client.get(f"/v1/results/{uuid.uuid4()}", headers={"X-Request-ID": "no-token"}).status_code,
            client.get(unknown, headers={**reader, "X-Request-ID": "unknown"}).status_code,
            client.get("/v1/worklist?limt=1", headers={**reader, "X-Request-ID": "typo"}).status_code,
            client.get("/v1/worklist", headers={**reader, "X-Request-ID": "throttled"}).status_code,
            client.get("/healthz", headers={"X-Request-ID": "fine"}).status_code,
        ]
    assert statuses == [401, 404, 400, 429, 200]
    access = {
        line["client_request_id"]: line
        for line in _lines(settings.log_dir / LOG_FILE)
        if line.get("event") == "request"
    }
    assert access["no-token"]["code"] == "unauthenticated"
    assert access["unknown"]["code"] == "not_found"
    assert access["typo"]["code"] == "invalid_field"
    assert access["throttled"]["code"] == "rate_limited" and access["throttled"]["status"] == 429
    assert "code" not in access["fine"]


def test_the_log_file_rotates_by_size(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "server.jsonl"
    configure_logging(stream=io.StringIO(), log_file=log_file, max_bytes=4000, backups=2)
    logger = logging.getLogger("inference.api.access")
    for n in range(200):
        logger.info("request", extra={"event": "request", "status": 200, "duration_ms": float(n)})
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["server.jsonl", "server.jsonl.1", "server.jsonl.2"]
    for path in log_file.parent.iterdir():
        assert path.stat().st_size <= 4000
        assert all(line["event"] == "request" for line in _lines(path))
    # The newest lines are in the live file, the last one written last.
    assert _lines(log_file)[-1]["duration_ms"] == 199.0


def test_an_empty_log_file_setting_logs_to_stderr_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DXASSIST_LOG_FILE", "")
    settings = make_settings(tmp_path)
    assert settings.log_path(LOG_FILE) is None
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz", headers={"X-Request-ID": "stderr-only"}).status_code == 200
    assert not (settings.log_dir / LOG_FILE).exists()
    err = capsys.readouterr().err
    access = [json.loads(line) for line in err.splitlines() if '"stderr-only"' in line]
    assert access and access[0]["event"] == "request"


def test_log_file_setting_resolves_under_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DXASSIST_LOG_FILE", "custom/api.jsonl")
    assert make_settings(tmp_path).log_path(LOG_FILE) == tmp_path.resolve() / "custom" / "api.jsonl"
    monkeypatch.setenv("DXASSIST_LOG_FILE", str(tmp_path / "abs.jsonl"))
    assert make_settings(tmp_path).log_path(LOG_FILE) == tmp_path / "abs.jsonl"
    monkeypatch.delenv("DXASSIST_LOG_FILE")
    assert make_settings(tmp_path).log_path(LOG_FILE) == tmp_path.resolve() / "logs" / LOG_FILE
