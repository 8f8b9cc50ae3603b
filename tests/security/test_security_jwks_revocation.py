"""Revoking an external issuer's token by its own id: identity providers write ``jti`` their own way
(Keycloak a UUID with its dashes, Okta ``AT.`` then letters, digits, dashes and underscores), and
``dxassist token revoke --jti`` takes the id as the token carries it."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.mark.parametrize(
    "leaked_id",
    ["6f1c2b7e-4a0d-4c55-9a1e-2f3b8c9d0e1f", "AT.k3Yx_9Qm-ZpR2wVt7L0aB4cD"],
    ids=["keycloak", "okta"],
)
def test_an_issuer_token_is_revoked_by_its_own_id(
    jwks: Jwks,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    leaked_id: str,
) -> None:
    key = _rsa()
    jwks.keys = [_jwk(key, "k1")]
    env = seeded_env(tmp_path, jwks_url=jwks.url, issuer=ISSUER, jwt_algorithm="RS256")
    for name in [k for k in os.environ if k.startswith("DXASSIST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(env.settings.home))
    leaked, other = _token(key, "k1", jti=leaked_id), _token(key, "k1", jti="0" * 32)

    assert main(["token", "revoke", "--jti", leaked_id, "--reason", "laptop stolen"]) == 0
    assert main(["token", "revocations"]) == 0
    assert leaked_id in capsys.readouterr().out

    with TestClient(create_app(env.settings)) as client:
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {leaked}"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_a_token_id_with_spaces_or_too_long_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path))
    for bad in ("two words", "x" * 65, "", "tab\there"):
        with pytest.raises(SystemExit) as refused:
            main(["token", "revoke", "--jti", bad])
        assert refused.value.code == 2
        assert "token id" in capsys.readouterr().err
