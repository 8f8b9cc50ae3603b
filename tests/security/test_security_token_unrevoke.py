"""`dxassist token unrevoke`: a revocation made by mistake (the wrong subject: every PACS token of it
refused) is taken back, audited in the same transaction as the change; one that does not exist is
said so, and nothing is written."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from _security_env import TestClient, seeded_env
from test_security_jwks import ISSUER, Jwks, _jwk, _rsa, _token

from inference.api import create_app
from inference.cli import main


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    yield served
    served.close()


def _token_entries(home: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(f"file:{home / 'record.db'}?mode=ro", uri=True)) as db:
        return list(
            db.execute(
                "SELECT action, resource_id FROM audit_events WHERE action LIKE 'token:%' ORDER BY seq"
            )
        )


def test_a_subjects_revocation_made_by_mistake_is_taken_back_and_audited(
    jwks: Jwks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _rsa()
    jwks.keys = [_jwk(key, "k1")]
    env = seeded_env(tmp_path, jwks_url=jwks.url, issuer=ISSUER, jwt_algorithm="RS256")
    for name in [k for k in os.environ if k.startswith("DXASSIST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(env.settings.home))
    pacs = _token(key, "k1", sub="pacs-chu-nord", jti="pacs-1")
    leaked = _token(key, "k1", sub="pacs-chu-sud", jti="leaked-1")
    auth = {"Authorization": f"Bearer {pacs}"}

    assert main(["token", "revoke", "--subject", "pacs-chu-nord"]) == 0  # meant pacs-chu-sud
    assert main(["token", "revoke", "--jti", "leaked-1"]) == 0
    with TestClient(create_app(env.settings)) as client:
        assert client.get("/v1/models", headers=auth).status_code == 401

    assert main(["token", "unrevoke", "--subject", "pacs-chu-nord"]) == 0
    assert "took back 1 revocation(s) of the tokens of pacs-chu-nord" in capsys.readouterr().out
    with TestClient(create_app(env.settings)) as client:
        assert client.get("/v1/models", headers=auth).status_code == 200
        # The other revocation stays.
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {leaked}"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"

    # Nothing to take back: said, exit 1, no entry.
    before = _token_entries(env.settings.home)
    assert main(["token", "unrevoke", "--jti", "never-revoked"]) == 1
    assert "No revocation of token never-revoked" in capsys.readouterr().err
    entries = _token_entries(env.settings.home)
    assert entries == before
    assert entries[-1] == ("token:unrevoke", "subject:pacs-chu-nord")
    assert main(["audit", "verify"]) == 0
