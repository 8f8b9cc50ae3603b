"""Bearer tokens, roles, facility scoping and the audit trail, as a caller meets them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
import uuid

import jwt
import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.record import Record
from inference.security import (
    KEY_FILE,
    PERMISSIONS,
    ROLES,
    Unauthenticated,
    issue_token,
    signing_key,
    verify_token,
)


def _claims(env: Env, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": env.settings.security.issuer,
        "aud": env.settings.security.audience,
        "sub": "x",
        "role": "admin",
        "facility": None,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def _signed(env: Env, **changes: object) -> str:
    return jwt.encode(_claims(env, **changes), signing_key(env.settings).private, algorithm="EdDSA")


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    """An algorithm-confusion token: HMAC-signed with the server's public key as the secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_token_round_trip_and_key_file_is_private(env: Env) -> None:
    token = issue_token(env.settings, subject="alice", role="radiologist", facility="F9", ttl=120)
    principal = verify_token(env.settings, token)
    assert (principal.subject, principal.role, principal.facility) == ("alice", "radiologist", "F9")
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    key_file = env.settings.keys_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="Unknown role"):
        issue_token(env.settings, subject="alice", role="surgeon")


def test_tokens_that_must_fail(env: Env, tmp_path) -> None:
    other = make_settings(tmp_path / "other-home")
    public_pem = (env.settings.keys_dir / "token-signing-ed25519.pub.pem").read_bytes()
    bad_tokens = {
        "expired": _signed(env, exp=int(time.time()) - 600),
        "not yet valid": _signed(env, nbf=int(time.time()) + 600),
        "other audience": _signed(env, aud="someone-else"),
        "other issuer": _signed(env, iss="someone-else"),
        "no exp": _signed(env, exp=...),
        "unknown role": _signed(env, role="surgeon"),
        "other key": issue_token(other, subject="x", role="admin"),
        "alg none": jwt.encode(_claims(env), None, algorithm="none"),
        "HS256 with the public key": _hs256(_claims(env), public_pem),
        "garbage": "not.a.token",
    }
    for name, token in bad_tokens.items():
        with pytest.raises(Unauthenticated):
            verify_token(env.settings, token)
            pytest.fail(f"{name} was accepted")


def test_401_without_or_with_a_bad_token(client: TestClient, env: Env) -> None:
    missing = client.get("/v1/models")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "unauthenticated"
    expired = client.get(
        "/v1/models", headers={"Authorization": f"Bearer {_signed(env, exp=int(time.time()) - 600)}"}
    )
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    basic = client.get("/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


def test_403_for_a_role_without_the_permission(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))]
    refused = client.post("/v1/studies", files=files, headers=env.headers("clinician"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client.get("/v1/worklist", headers=env.headers("clinician")).status_code == 403
    assert client.get("/v1/worklist", headers=env.headers("auditor")).status_code == 403
    assert client.post("/v1/vitals", json={}, headers=env.headers("radiologist")).status_code == 403
    models = client.get("/v1/models", headers=env.headers("ml_engineer"))
    assert models.status_code == 200
    served = models.json()["models"]
    assert {m["name"] for m in served} == {"cxr-findings", "vitals-triage"}
    assert all(len(m["sha256"]) == 64 and m["alias"] == "champion" and m["provider"] for m in served)


def test_every_role_has_models_read_and_only_known_roles_appear() -> None:
    assert {r.value for r in PERMISSIONS["models:read"]} == set(ROLES)
    assert all({r.value for r in roles} <= set(ROLES) for roles in PERMISSIONS.values())


def test_facility_scoping_and_audit_trail(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1"), "application/dicom"))]
    posted = client.post("/v1/studies", files=files, headers=env.headers("pacs", facility="F1"))
    assert posted.status_code == 201
    rid = posted.json()["result_id"]
    patient_id = posted.json()["patient"]["id"]
    path = f"/v1/results/{rid}"
    assert client.get(path, headers=env.headers("pacs", facility="F1")).status_code == 200
    assert client.get(path, headers=env.headers("pacs", facility="F2")).status_code == 404
    assert client.get(path, headers=env.headers("pacs", facility=None)).status_code == 404
    assert client.get(path, headers=env.headers("radiologist", facility="F2")).status_code == 404
    # A token bound to no facility owns nothing: without the patient's sharing consent it reads nothing.
    assert client.get(path, headers=env.headers("radiologist", facility=None)).status_code == 404
    assert client.get(path, headers=env.headers("radiologist", facility="F1")).status_code == 200
    assert client.get(path, headers=env.headers("admin", facility="F2")).status_code == 200

    record = Record(env.settings.record_url)
    try:
        events = record.audit.events(patient_id=patient_id, limit=100)
    finally:
        record.close()
    outcomes = [(e["action"], e["role"], e["facility"], e["outcome"]) for e in events]
    assert ("studies:submit", "pacs", "F1", "success") in outcomes
    assert ("results:read", "pacs", "F2", "denied") in outcomes
    assert ("results:read", "radiologist", "F1", "success") in outcomes
    assert ("results:read", "radiologist", None, "denied") in outcomes
    # Every request's entry names its client; the system's own entries (keeping the model input for
    # retraining, under the patient's consent) come from no client.
    assert all(e["client"] for e in events if e["role"] != "system")
    assert all(e["client"] is None for e in events if e["role"] == "system")


def test_role_denials_are_audited(client: TestClient, env: Env) -> None:
    subject = f"nosy-{uuid.uuid4().hex[:6]}"
    client.get("/v1/worklist", headers=env.headers("auditor", subject=subject))
    record = Record(env.settings.record_url)
    try:
        events = [e for e in record.audit.events(limit=500) if e["subject"] == subject]
    finally:
        record.close()
    assert [(e["action"], e["outcome"]) for e in events] == [("worklist:read", "denied")]
