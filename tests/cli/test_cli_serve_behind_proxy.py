"""`dxassist serve` behind a reverse proxy, as docs/operations.md says to run it.

The real console script in a subprocess: forwarding headers are trusted only from the addresses in
uvicorn's ``FORWARDED_ALLOW_IPS``; the audit trail then records the client the proxy names, with the
request's id; with ``DXASSIST_LOG_FILE`` empty the logs go to stderr only.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import tiny_models
from _dxassist_cli import serving

from inference.config import Settings
from inference.record import Record
from inference.security import issue_token

PROXIED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


def _audit_of(home: Path, request_id: str) -> list[dict]:
    record = Record(f"sqlite:///{home / 'record.db'}")
    try:
        _total, entries = record.audit.search(agent="proxy-reader")
    finally:
        record.close()
    return [e for e in entries if e["request_id"] == request_id]


@pytest.mark.timeout(600)
def test_forwarded_headers_are_trusted_from_the_named_proxy_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    settings = Settings(home=home)
    missing = f"/v1/results/{uuid.uuid4()}"

    # The proxy is this host (127.0.0.1): its X-Forwarded-For and X-Forwarded-Proto are believed.
    with serving(
        home, tmp_path / "trusted.log", FORWARDED_ALLOW_IPS="127.0.0.1", DXASSIST_LOG_FILE=""
    ) as url:
        headers = {
            "Authorization": f"Bearer {issue_token(settings, subject='proxy-reader', role='radiologist')}",
            **PROXIED,
        }
        answer = httpx.get(url + missing, headers={**headers, "X-Request-ID": "via-proxy-1"}, trust_env=False)
        assert answer.status_code == 404
        trusted_id = answer.headers["x-request-id"]
        bundle = httpx.get(f"{url}/fhir/Patient", headers=headers, trust_env=False).json()
        assert bundle["link"][0]["url"].startswith("https://")
    (entry,) = _audit_of(home, trusted_id)
    assert entry["client"] == "203.0.113.9" and entry["outcome"] == "not_found"
    # DXASSIST_LOG_FILE empty: no file, the access line on stderr with the request id and error code.
    assert not (home / "logs" / "server.jsonl").exists()
    lines = [
        json.loads(line)
        for line in (tmp_path / "trusted.log").read_text().splitlines()
        if "via-proxy-1" in line
    ]
    access = [line for line in lines if line.get("event") == "request"]
    assert access and access[0]["code"] == "not_found" and access[0]["status"] == 404
    # The proxy's id leads to the server's, which the trail names.
    assert access[0]["client_request_id"] == "via-proxy-1" and access[0]["request_id"] == trusted_id

    # The proxy is elsewhere: a client's own X-Forwarded-For is not believed.
    with serving(home, tmp_path / "untrusted.log", FORWARDED_ALLOW_IPS="192.0.2.1") as url:
        answer = httpx.get(url + missing, headers={**headers, "X-Request-ID": "direct-1"}, trust_env=False)
        assert answer.status_code == 404
        direct_id = answer.headers["x-request-id"]
        bundle = httpx.get(f"{url}/fhir/Patient", headers=headers, trust_env=False).json()
        assert bundle["link"][0]["url"].startswith("http://127.0.0.1:")
    (entry,) = _audit_of(home, direct_id)
    assert entry["client"] == "127.0.0.1"
    assert (home / "logs" / "server.jsonl").exists()
