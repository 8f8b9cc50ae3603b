"""A server that has never read the revoked tokens accepts no bearer token: a token revoked with
``dxassist token revoke`` must not work because the record's revocation table could not be read when the
server started. It is refused with a 503 that says to retry (never a 401: nothing is wrong with the token),
said once in the log without naming anyone; once the list is read, the revoked token is refused and the
others work, and a later failed read keeps the last list. On SQLite and on a real PostgreSQL
(``tests/_postgres.py``), with the table made unreadable by renaming it away.

Waits are liveness bounds (the server re-reads the list every 5 s), never speed assertions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import pytest
from _security_env import Env, TestClient
from sqlalchemy import create_engine, text

from inference.api import create_app
from inference.cli import main
from inference.config import Settings

LIVENESS_SECONDS = 60
TABLE, AWAY = "token_revocations", "token_revocations_away"


def _rename(settings: Settings, old: str, new: str) -> None:
    engine = create_engine(settings.record_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    finally:
        engine.dispose()


def _answer(client: TestClient, headers: dict[str, str]) -> tuple[int, str]:
    response = client.get("/v1/models", headers=headers)
    code = response.json()["error"]["code"] if response.status_code != 200 else ""
    return response.status_code, code


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not check() and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.mark.timeout(300)
def test_a_server_that_never_read_the_revocations_accepts_no_token_until_it_has(
    backend_env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend_env.settings
    for name in [k for k in os.environ if k.startswith("DXASSIST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("DXASSIST_DATABASE_URL", settings.database_url)
    leaked = backend_env.headers("pacs", subject="pacs-leaked")
    other = backend_env.headers("pacs", subject="pacs-other")
    assert main(["token", "revoke", "--subject", "pacs-leaked", "--reason", "laptop stolen"]) == 0

    _rename(settings, TABLE, AWAY)
    renamed = True
    try:
        with caplog.at_level(logging.INFO, logger="inference"), TestClient(create_app(settings)) as client:
            for headers in (leaked, other, leaked, other):
                response = client.get("/v1/models", headers=headers)
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "revocations_unavailable"
                assert int(response.headers["Retry-After"]) > 0
                assert "retry" in response.json()["error"]["message"]
            # Routes without a token are not held back.
            assert client.get("/healthz").status_code == 200
            unread = [r for r in caplog.records if getattr(r, "event", None) == "revocations_unread"]
            assert len(unread) == 1 and unread[0].levelno >= logging.WARNING
            assert not [r for r in caplog.records if "pacs-" in r.getMessage()]

            # The table is back: within the refresh, the revoked token is refused and the other works.
            _rename(settings, AWAY, TABLE)
            renamed = False
            _until(lambda: _answer(client, leaked)[0] != 503)
            assert _answer(client, leaked) == (401, "token_revoked")
            assert _answer(client, other) == (200, "")

            # A later failed read keeps the list read last (the revoked token stays refused).
            _rename(settings, TABLE, AWAY)
            renamed = True

            def unreadable_said() -> bool:
                _answer(client, other)
                return any(getattr(r, "event", None) == "revocations_unreadable" for r in caplog.records)

            _until(unreadable_said)
            assert unreadable_said()
            assert _answer(client, leaked) == (401, "token_revoked")
            assert _answer(client, other) == (200, "")
    finally:
        if renamed:
            _rename(settings, AWAY, TABLE)
