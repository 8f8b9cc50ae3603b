"""Refused bearer tokens as a hospital security officer meets them on the audit trail, on SQLite and on a
real PostgreSQL: each refusal (no token, a forged one, a stolen one replayed after its expiry) is an entry
(``api:authenticate``, IHE ATNA User Authentication, failure) naming the client, the request and the
reason, and the token's subject only when the token is genuine; at most one a minute per client and
reason; under the facility of a genuine token only, so another facility's auditor does not see it.
"""

from __future__ import annotations

import io
import itertools
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from _security_env import Env, TestClient, make_settings, seeded_env
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from prometheus_client.parser import text_string_to_metric_families

from inference._cli_commands import audit_verify, export_kept_training_set
from inference.api import create_app
from inference.config import Settings
from inference.record import Record
from inference.security import issue_token, signing_key
from inference.services import add_user

ACTION = "api:authenticate"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def served(backend_env: Env) -> Iterator[tuple[TestClient, Env]]:
    with TestClient(create_app(backend_env.settings)) as client:
        yield client, backend_env


def _from(client: TestClient, address: str) -> TestClient:
    """A client of the same running app, calling from ``address`` (a loopback address: only a label in
    the request's scope, nothing is sent to it)."""
    return TestClient(client.app, client=(address, 40000))


_addresses = itertools.count(1)


def _address() -> str:
    """A client address of its own for each refusal (the trail is throttled per address and reason)."""
    n = next(_addresses)
    return f"127.0.{n // 250 + 1}.{n % 250 + 1}"


def _expired(env: Env, *, subject: str, role: str, facility: str | None) -> str:
    """A genuine token of this server's key (as ``dxassist token issue`` makes them) that expired an hour
    ago: a stolen token replayed too late."""
    now = int(time.time())
    claims = {
        "iss": env.settings.security.issuer,
        "aud": env.settings.security.audience,
        "sub": subject,
        "role": role,
        "facility": facility,
        "iat": now - 7200,
        "nbf": now - 7200,
        "exp": now - 3600,
        "jti": uuid.uuid4().hex,
    }
    key = signing_key(env.settings)
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Another server's settings: its signing key is not ours."""
    return make_settings(tmp_path_factory.mktemp("other-server"))


def _forged(other: Settings, *, subject: str = "mallory-admin", expired: bool = False) -> str:
    """A well-formed token claiming an admin of facility F-EVIL, signed with another server's key."""
    token = issue_token(other, subject=subject, role="admin", facility="F-EVIL")
    if not expired:
        return token
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200)
    return jwt.encode(claims, signing_key(other).private, algorithm="EdDSA")


def _entries(env: Env, client_address: str) -> list[dict[str, Any]]:
    """The trail's ``api:authenticate`` entries of one client address, oldest first."""
    record = Record(env.settings.record_url)
    try:
        _total, rows = record.audit.search(limit=500)
    finally:
        record.close()
    return [e for e in reversed(rows) if e["action"] == ACTION and e["client"] == client_address]


def _metric(client: TestClient, audit: str, code: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dxassist_refused_authentications_total" and sample.labels == {
                "audit": audit,
                "code": code,
            }:
                return float(sample.value)
    return 0.0


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_refused_tokens_answer_401_and_are_on_the_trail(
    served: tuple[TestClient, Env], other: Settings
) -> None:
    client, env = served
    forged, stolen = _forged(other), _expired(env, subject="dr-stolen", role="radiologist", facility="F1")
    forged_late = _forged(other, subject="mallory-late", expired=True)
    cases = [
        # (route, headers, error code, subject, role, facility)
        ("/v1/models", {}, "unauthenticated", "unknown-user", "none", None),
        ("/v1/worklist", _bearer(forged), "invalid_token", "unknown-user", "none", None),
        ("/fhir/Patient", _bearer(stolen), "token_expired", "dr-stolen", "radiologist", "F1"),
        ("/fhir/AuditEvent", _bearer(forged_late), "invalid_token", "unknown-user", "none", None),
        (
            "/v1/models",
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "unauthenticated",
            "unknown-user",
            "none",
            None,
        ),
    ]
    for route, headers, code, subject, role, facility in cases:
        address = _address()
        response = _from(client, address).get(route, headers=headers)
        # The answer is the same 401 as ever: only the trail is new.
        assert response.status_code == 401, (route, code, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        body = response.json()
        found = body["issue"][0]["details"]["coding"][0]["code"] if route.startswith("/fhir") else None
        assert (found or body.get("error", {}).get("code")) == code
        [entry] = _entries(env, address)
        assert (entry["subject"], entry["role"], entry["facility"]) == (subject, role, facility), route
        assert (entry["outcome"], entry["resource_type"], entry["resource_id"]) == (
            "denied",
            "BearerToken",
            code,
        )
        assert entry["patient_id"] is None
        assert entry["request_id"] == response.headers["x-request-id"]
        # Never the token, never what a forged token claims.
        shown = repr(entry)
        assert "mallory" not in shown and "F-EVIL" not in shown
        for token in (forged, stolen, forged_late):
            assert token not in shown and token.split(".")[2] not in shown
    record = Record(env.settings.record_url)
    try:
        assert record.audit.verify().ok
    finally:
        record.close()


def test_a_burst_of_forged_tokens_from_one_client_is_one_entry(
    served: tuple[TestClient, Env], other: Settings
) -> None:
    client, env = served
    address, neighbour = _address(), _address()
    throttled_before = _metric(client, "throttled", "invalid_token")
    attacker = _from(client, address)
    # A token guesser: a new forged token (another subject each time) on every request.
    forged = [_forged(other, subject=f"guess-{i}") for i in range(20)]
    for token in forged:
        assert attacker.get("/v1/worklist", headers=_bearer(token)).status_code == 401
    assert len(_entries(env, address)) == 1
    # Every refusal is still counted.
    assert _metric(client, "throttled", "invalid_token") - throttled_before == 19
    # Another reason from the same client, and the same reason from another client, are entries of their own.
    assert attacker.get("/v1/worklist").status_code == 401
    assert _from(client, neighbour).get("/v1/worklist", headers=_bearer(forged[0])).status_code == 401
    assert [e["resource_id"] for e in _entries(env, address)] == ["invalid_token", "unauthenticated"]
    assert [e["resource_id"] for e in _entries(env, neighbour)] == ["invalid_token"]


def _agent_total(client: TestClient, env: Env, *, facility: str | None, agent: str) -> int:
    page = client.get(
        "/fhir/AuditEvent",
        params={"agent": agent, "_count": "500"},
        headers=env.headers("auditor", facility=facility, subject=f"auditor-{facility}"),
    )
    assert page.status_code == 200, page.text
    return int(page.json()["total"])


def test_auditors_see_a_refused_token_under_its_verified_facility_only(
    served: tuple[TestClient, Env], other: Settings
) -> None:
    client, env = served
    subject = f"f2-stolen-{uuid.uuid4().hex[:6]}"
    address = _address()
    stolen = _expired(env, subject=subject, role="clinician", facility="F2")
    assert _from(client, address).get("/v1/worklist", headers=_bearer(stolen)).status_code == 401
    [entry] = _entries(env, address)
    assert entry["facility"] == "F2"
    # F2's auditor sees who replayed its clinician's token; F1's does not, by search or by id.
    assert _agent_total(client, env, facility="F2", agent=subject) == 1
    assert _agent_total(client, env, facility="F1", agent=subject) == 0
    one = f"/fhir/AuditEvent/{entry['seq']}"
    assert client.get(one, headers=env.headers("auditor", facility="F1")).status_code == 404
    assert client.get(one, headers=env.headers("auditor", facility="F2")).status_code == 200
    # An auditor bound to no facility and the admin see it too.
    assert _agent_total(client, env, facility=None, agent=subject) == 1
    admin = env.headers("admin", facility=None)
    assert client.get(one, headers=admin).status_code == 200

    # A forged token belongs to no facility: no facility's auditor sees it, the admin does.
    forged_from = _address()
    assert _from(client, forged_from).get("/v1/models", headers=_bearer(_forged(other))).status_code == 401
    [anonymous] = _entries(env, forged_from)
    assert anonymous["facility"] is None
    hidden = f"/fhir/AuditEvent/{anonymous['seq']}"
    for facility in ("F1", "F2", "F-EVIL"):
        assert client.get(hidden, headers=env.headers("auditor", facility=facility)).status_code == 404
    assert client.get(hidden, headers=admin).status_code == 200


def test_the_fhir_audit_event_of_a_refusal_is_a_failed_user_authentication(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    address = _address()
    stolen = _expired(env, subject="dr-fhir", role="radiologist", facility="F1")
    refused = _from(client, address).get("/v1/models", headers=_bearer(stolen))
    [entry] = _entries(env, address)
    page = client.get(f"/fhir/AuditEvent/{entry['seq']}", headers=env.headers("auditor", facility=None))
    event = AuditEvent.model_validate(page.json())
    # IHE ATNA User Authentication (DICOM 110114), action E, its event type Login (110122), failed.
    assert (event.type.code, event.action, event.outcome) == ("110114", "E", "4")
    assert event.outcomeDesc == "denied"
    assert [(s.system, s.code) for s in event.subtype] == [
        ("urn:dxassist:action", ACTION),
        ("http://dicom.nema.org/resources/ontology/DCM", "110122"),
    ]
    agent = event.agent[0]
    assert (agent.who.identifier.value, agent.network.address) == ("dr-fhir", address)
    [what] = event.entity
    assert what.what.identifier.value == "token_expired"
    details = {d.type: d.valueString for d in what.detail}
    assert details["request-id"] == refused.headers["x-request-id"]


def _rendered(client: TestClient, env: Env, **params: str) -> list[dict[str, Any]]:
    page = client.get(
        "/fhir/AuditEvent", params={**params, "_count": "500"}, headers=env.headers("auditor", facility=None)
    )
    assert page.status_code == 200, page.text
    bundle = Bundle.model_validate(page.json())
    return [e.resource.model_dump(mode="json") for e in bundle.entry or []]


def test_queries_and_exports_have_their_dicom_audit_event_types(
    served: tuple[TestClient, Env], tmp_path: Path
) -> None:
    client, env = served
    reader = f"dr-query-{uuid.uuid4().hex[:6]}"
    headers = env.headers("radiologist", facility="F1", subject=reader)
    assert client.get("/v1/worklist", headers=headers).status_code == 200
    assert client.get("/fhir/DiagnosticReport", headers=headers).status_code == 200
    assert client.get(f"/fhir/Patient/{uuid.uuid4()}", headers=headers).status_code == 404
    events = _rendered(client, env, agent=reader)
    kinds = {(e["subtype"][0]["code"], e["type"]["code"], e["action"]) for e in events}
    # A worklist and a search are DICOM 110112 Query (action E); a read stays 110110 Patient Record (R).
    assert kinds == {
        ("worklist:read", "110112", "E"),
        ("fhir:read", "110112", "E"),
        ("fhir:read", "110110", "R"),
    }
    # A training-set export is DICOM 110106 Export, action R.
    assert export_kept_training_set(env.settings, out=tmp_path / "export", stream=io.StringIO()) == 0
    exports = [e for e in _rendered(client, env) if e["subtype"][0]["code"] == "export:training-set"]
    assert exports and {(e["type"]["code"], e["action"]) for e in exports} == {("110106", "R")}


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def test_sign_ins_and_sign_outs_of_the_pages_name_their_login_or_logout(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    username = f"dr.{uuid.uuid4().hex[:8]}"
    record = Record(env.settings.record_url)
    try:
        add_user(record, username=username, password=PASSWORD, role="radiologist", facility="F1")
    finally:
        record.close()
    browser = _from(client, _address())
    form = browser.get("/ui/signin")
    signed_in = browser.post(
        "/ui/signin",
        data={"username": username, "password": PASSWORD, "csrf_token": _csrf(form.text)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    page = browser.get("/ui/")
    signed_out = browser.post("/ui/signout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert signed_out.status_code == 303
    events = [
        e
        for e in _rendered(client, env, agent=f"web:{username}")
        if e["subtype"][0]["code"].startswith("ui:sign")
    ]
    # DICOM User Authentication's event type: 110122 Login, 110123 Logout.
    assert {(e["subtype"][0]["code"], e["type"]["code"], e["subtype"][1]["code"]) for e in events} == {
        ("ui:sign_in", "110114", "110122"),
        ("ui:sign_out", "110114", "110123"),
    }


def test_a_refusal_whose_audit_entry_cannot_be_written_is_still_a_401(
    tmp_path: Path, other: Settings
) -> None:
    env = seeded_env(tmp_path / "home")
    with TestClient(create_app(env.settings)) as client:
        database = sqlite3.connect(env.home / "record.db")
        try:
            database.execute(
                "CREATE TRIGGER auth_audit_broken BEFORE INSERT ON audit_events "
                f"WHEN NEW.action = '{ACTION}' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
            database.commit()
        finally:
            database.close()
        failed_before = _metric(client, "failed", "invalid_token")
        refused = client.get("/v1/models", headers=_bearer(_forged(other)))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
        assert _metric(client, "failed", "invalid_token") - failed_before == 1
        # The server goes on answering.
        assert client.get("/v1/models", headers=env.headers("ml_engineer")).status_code == 200
    assert _entries(env, "testclient") == []
    assert audit_verify(env.settings, stream=io.StringIO()) == 0


def test_account_changes_at_the_terminal_are_audited_as_security_alerts(tmp_path: Path) -> None:
    """Creating and disabling a reader's account changes who may read patient data: each is on the audit
    trail (it was not), under the terminal's user, as an IHE ATNA Security Alert with its CID 401 type."""
    import subprocess

    from _dxassist_cli import DXASSIST, dxassist_env

    from inference.config import Settings
    from inference.record import Record
    from inference.record.fhir import audit_events

    home = tmp_path / "home"
    home.mkdir()
    env = dxassist_env(home)
    add = ["user", "add", "--username", "dr.audit", "--role", "radiologist", "--facility", "F1"]
    for args, stdin in (
        ([*add, "--password-stdin"], "a-long-enough-password\n"),
        (["user", "disable", "dr.audit"], None),
    ):
        done = subprocess.run(
            [str(DXASSIST), *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    record = Record(Settings(home=home).record_url)
    try:
        _total, entries = record.audit.search(limit=50)
    finally:
        record.close()
    changes = [e for e in entries if e["action"].startswith("user:")]
    assert sorted((e["action"], e["resource_id"], e["outcome"]) for e in changes) == [
        ("user:add", "dr.audit", "success"),
        ("user:disable", "dr.audit", "success"),
    ]
    assert all(e["subject"].startswith("cli:") and e["role"] == "admin" for e in changes)
    for entry, event_type in zip(
        sorted(changes, key=lambda e: e["action"]), ("110136", "110137"), strict=True
    ):
        alert = audit_events.audit_event(entry)
        assert (alert["type"]["code"], alert["action"]) == ("110113", "E")
        assert {c["code"] for c in alert["subtype"]} >= {entry["action"], event_type}
