"""A server that has never read the revoked tokens refuses every bearer token (503
``revocations_unavailable``): ``/readyz`` says it is not ready, so that a load balancer sends its traffic to
a replica that can serve it. The probe answers without a login, so it says which check fails
(``revocations``) and nothing of why (no table, path or driver message). Once the list is read it is ready;
a later failed read keeps the last list, and the server stays ready. On SQLite and on a real PostgreSQL
(``tests/_postgres.py``), with the table made unreadable by renaming it away.

Waits are liveness bounds (the server re-reads the list at most every 5 s), never speed assertions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from _security_env import Env, TestClient
from sqlalchemy import create_engine, text

from inference.api import create_app
from inference.config import Settings
from inference.record import Record

LIVENESS_SECONDS = 60
TABLE, AWAY = "token_revocations", "token_revocations_away"


def _rename(settings: Settings, old: str, new: str) -> None:
    engine = create_engine(settings.record_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        engine.dispose()


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not check() and time.monotonic() < deadline:
        time.sleep(0.5)


def _ready(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


@pytest.mark.timeout(300)
def test_readyz_is_not_ready_until_the_revoked_tokens_have_been_read_once(
    backend_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend_env.settings
    headers = backend_env.headers("pacs", subject="pacs-ready")
    record = Record(settings.record_url)
    try:
        record.migrate()
    finally:
        record.close()
    _rename(settings, TABLE, AWAY)
    renamed = True
    try:
        with caplog.at_level(logging.INFO, logger="inference"), TestClient(create_app(settings)) as client:
            _until(lambda: _ready(client)[1]["checks"].get("models") is True)
            status, body = _ready(client)
            assert status == 503, body
            assert body["status"] == "unavailable"
            assert body["checks"] == {
                "models": True,
                "database": True,
                "revocations": False,
                "audit_anchor": True,
            }
            # Which check fails, not why: nothing of the record's tables, files or driver.
            said = client.get("/readyz").text
            for hidden in (TABLE, str(settings.home), settings.record_url, "sqlite", "psycopg", "relation"):
                assert hidden not in said, hidden
            # As a caller finds it: the server serves no bearer token.
            refused = client.get("/v1/models", headers=headers)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "revocations_unavailable"

            # The table is back: the server reads the list and is ready (and serves tokens).
            _rename(settings, AWAY, TABLE)
            renamed = False
            _until(lambda: _ready(client)[0] == 200)
            assert _ready(client) == (
                200,
                {
                    "status": "ok",
                    "checks": {"models": True, "database": True, "revocations": True, "audit_anchor": True},
                    "problems": [],
                },
            )
            assert client.get("/v1/models", headers=headers).status_code == 200

            # A later failed read keeps the list read last: the server still serves tokens, so stays ready.
            _rename(settings, TABLE, AWAY)
            renamed = True

            def unreadable_said() -> bool:
                _ready(client)
                return any(getattr(r, "event", None) == "revocations_unreadable" for r in caplog.records)

            _until(unreadable_said)
            assert unreadable_said()
            assert _ready(client)[0] == 200
            assert client.get("/v1/models", headers=headers).status_code == 200
    finally:
        if renamed:
            _rename(settings, AWAY, TABLE)
