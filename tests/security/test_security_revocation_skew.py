"""A subject's revocation against issuers whose clocks are ahead: the cut-off is the revoking machine's
clock, the token's ``iat`` its issuer's. A token issued before the revocation by an identity provider
whose clock is 25 s ahead carries an ``iat`` after the cut-off; it must still be refused (the server
accepts tokens from clocks up to 30 s ahead). A token of the subject whose ``iat`` is past that margin
works."""

from __future__ import annotations

import math
import os
import time
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


def test_a_token_from_an_issuer_with_its_clock_ahead_does_not_escape_its_subjects_revocation(
    jwks: Jwks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _rsa()
    jwks.keys = [_jwk(key, "k1")]
    env = seeded_env(tmp_path, jwks_url=jwks.url, issuer=ISSUER, jwt_algorithm="RS256")
    for name in [k for k in os.environ if k.startswith("DXASSIST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DXASSIST_HOME", str(env.settings.home))

    # Issued (and leaked) just before the revocation, by an identity provider 25 s ahead.
    issued = int(time.time())
    leaked = _token(key, "k1", sub="pacs-a", iat=issued + 25, nbf=issued + 25, jti="leaked")
    assert main(["token", "revoke", "--subject", "pacs-a", "--reason", "router config copied"]) == 0
    said = capsys.readouterr().out
    # A token whose iat is past the margin the revocation names works: one from the same issuer's
    # clock, now 30 s ahead, once the server's second has moved past the revocation's (an iat more
    # than 30 s ahead of the server is refused as not yet valid).
    after = math.ceil(time.time()) + 1
    while time.time() < after:
        time.sleep(0.1)
    renewed = _token(key, "k1", sub="pacs-a", iat=after + 30, nbf=after, jti="renewed")
    other = _token(key, "k1", sub="pacs-b", iat=issued + 25, nbf=issued + 25, jti="other")

    with TestClient(create_app(env.settings)) as client:
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {leaked}"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {renewed}"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    # The operator is told when a new token of the subject works.
    assert "30 s" in said and "a new token for it works if issued from" in said
