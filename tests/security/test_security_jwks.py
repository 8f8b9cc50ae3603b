"""Production tokens: an external issuer's JWKS served on 127.0.0.1, algorithm pinned by configuration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from _security_env import TestClient, make_settings, seeded_env
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from inference.api import create_app
from inference.config import Settings
from inference.record import Record
from inference.security import JwksUnavailable, Unauthenticated, _jwks, issue_token, verify_token

ISSUER = "https://idp.test/realms/hospital"


class Jwks:
    """A JWKS document served over http on 127.0.0.1; ``keys`` may change while it runs."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks-{uuid.uuid4().hex[:6]}.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    )
    return {**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", **extra}


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "dxassist-api",
        "sub": "dr-who",
        "role": "radiologist",
        "facility": "CHU-NORD",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def _token(key: Any, kid: str | None, algorithm: str = "RS256", **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(_claims(**changes), key, algorithm=algorithm, headers=headers)


def _hs256_with(secret: bytes, kid: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    signing_input = f"{head}.{b64(json.dumps(_claims()).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    yield served
    served.close()


def _settings(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    return make_settings(tmp_path, jwks_url=url, issuer=ISSUER, jwt_algorithm="RS256", **overrides)


def test_a_token_of_the_issuer_is_accepted_and_its_claims_read(jwks: Jwks, tmp_path: Path) -> None:
    key = _rsa()
    jwks.keys = [_jwk(key, "k1")]
    settings = _settings(tmp_path, jwks.url)
    principal = verify_token(settings, _token(key, "k1"))
    assert (principal.subject, principal.role, principal.facility) == ("dr-who", "radiologist", "CHU-NORD")
    listed = verify_token(settings, _token(key, "k1", role=["offline_access", "clinician"], facility=...))
    assert (listed.role, listed.facility) == ("clinician", None)
    assert jwks.requests == 1  # cached


def test_tokens_that_must_fail(jwks: Jwks, tmp_path: Path) -> None:
    key, other = _rsa(), _rsa()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks.keys = [_jwk(key, "k1"), _jwk(ec_key, "ec1"), {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}]
    settings = _settings(tmp_path, jwks.url)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bad = {
        "alg none": jwt.encode(_claims(), None, algorithm="none", headers={"kid": "k1"}),
        "HS256 signed with the public key": _hs256_with(public_pem, "k1"),
        "HS256 with the JWKS oct key": _hs256_with(b"secret", "sym"),
        "another RSA algorithm": _token(key, "k1", algorithm="RS384"),
        "ES256 (not the configured algorithm)": _token(ec_key, "ec1", algorithm="ES256"),
        "signed by another key under a known kid": _token(other, "k1"),
        "unknown kid": _token(other, "k9"),
        "expired": _token(key, "k1", exp=int(time.time()) - 120),
        "not yet valid": _token(key, "k1", nbf=int(time.time()) + 600),
        "other audience": _token(key, "k1", aud="another-api"),
        "other issuer": _token(key, "k1", iss="https://evil.test"),
        "no exp": _token(key, "k1", exp=...),
        "no known role": _token(key, "k1", role="surgeon"),
        "two known roles": _token(key, "k1", role=["admin", "auditor"]),
        "embedded EdDSA token": issue_token(make_settings(tmp_path / "embedded"), subject="x", role="admin"),
        "garbage": "not.a.token",
    }
    for name, token in bad.items():
        with pytest.raises(Unauthenticated):
            verify_token(settings, token)
            pytest.fail(f"{name} was accepted")


def test_key_rotation_reaches_the_server_through_the_jwks(
    jwks: Jwks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = _rsa(), _rsa()
    jwks.keys = [_jwk(old, "2026-01")]
    settings = _settings(tmp_path, jwks.url)
    assert verify_token(settings, _token(old, "2026-01")).subject == "dr-who"
    monkeypatch.setattr(_jwks, "_MIN_REFETCH_SECONDS", 0.0)
    jwks.keys = [_jwk(old, "2026-01"), _jwk(new, "2026-02")]
    assert verify_token(settings, _token(new, "2026-02")).subject == "dr-who"
    assert jwks.requests == 2


def test_only_https_or_loopback_jwks_urls_are_used(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "http://idp.example.org/jwks.json")
    with pytest.raises(JwksUnavailable, match="https"):
        verify_token(settings, _token(_rsa(), "k1"))


def test_the_api_accepts_issuer_tokens_and_answers_503_when_the_jwks_is_down(
    jwks: Jwks, tmp_path: Path
) -> None:
    key = _rsa()
    jwks.keys = [_jwk(key, "k1")]
    env = seeded_env(tmp_path, jwks_url=jwks.url, issuer=ISSUER, jwt_algorithm="RS256")
    with TestClient(create_app(env.settings)) as client:
        assert (
            client.get("/v1/models", headers={"Authorization": f"Bearer {_token(key, 'k1')}"}).status_code
            == 200
        )
        embedded = issue_token(make_settings(tmp_path / "embedded"), subject="x", role="admin")
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {embedded}"}).status_code == 401
        down = _settings(
            tmp_path, jwks.url.replace(".json", "-gone.json").replace(str(jwks.server.server_address[1]), "1")
        )
        client.app.state.settings = down  # the same app, now pointing at a JWKS nobody serves
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {_token(key, 'k1')}"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "jwks_unavailable"


def test_a_refused_issuer_token_is_audited_under_its_subject_only_when_the_issuer_signed_it(
    jwks: Jwks, tmp_path: Path
) -> None:
    key, stranger = _rsa(), _rsa()
    jwks.keys = [_jwk(key, "k1")]
    env = seeded_env(tmp_path, jwks_url=jwks.url, issuer=ISSUER, jwt_algorithm="RS256")
    hour_ago = int(time.time()) - 3600
    tokens = {
        # The issuer's own token, replayed an hour after it expired: whose it was is known.
        "127.0.0.21": _token(key, "k1", iat=hour_ago - 300, exp=hour_ago),
        # The same claims signed by a key the issuer never published, under its kid or another one.
        "127.0.0.22": _token(stranger, "k1", iat=hour_ago - 300, exp=hour_ago),
        "127.0.0.23": _token(stranger, "k-unknown", sub="dr-mallory"),
    }
    with TestClient(create_app(env.settings)) as client:
        for address, token in tokens.items():
            caller = TestClient(client.app, client=(address, 40000))
            refused = caller.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 401
    record = Record(env.settings.record_url)
    try:
        _total, rows = record.audit.search(limit=500)
    finally:
        record.close()
    seen = {
        e["client"]: (e["subject"], e["role"], e["facility"], e["resource_id"])
        for e in rows
        if e["action"] == "api:authenticate"
    }
    assert seen == {
        "127.0.0.21": ("dr-who", "radiologist", "CHU-NORD", "token_expired"),
        "127.0.0.22": ("unknown-user", "none", None, "invalid_token"),
        "127.0.0.23": ("unknown-user", "none", None, "invalid_token"),
    }
