"""Security of the pages: CSRF on every form, cookie flags, lockout, session expiry, no patient data in
URLs or titles, the same facility scope and audit trail as the API."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _api_env import make_settings  # noqa: I001  (the API tests' helpers, on the path through _ui_live)
from _ui_live import (
    PASSWORD,
    Env,
    TestClient,
    add_account,
    csrf_of,
    send_study,
    send_vitals,
    sign_in,
)
from sqlalchemy import update

from inference.api import create_app
from inference.api._app import LOG_FILE
from inference.api.ui._pages import router
from inference.api.ui._render import PAGE_CSP
from inference.record import Record
from inference.record._accounts import WebSession
from inference.security import PERMISSIONS

UI_OPEN = {
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("GET", "/sso/start"),
    ("GET", "/sso/callback"),
}


def _fresh(client: TestClient) -> TestClient:
    client.cookies.clear()
    return client


def test_every_page_route_names_a_permission_or_is_the_sign_in() -> None:
    from inference.api.deps import route_permission

    for route in router.routes:
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            permission = route_permission(route)
            if (method, route.path) in UI_OPEN:
                continue
            assert permission in PERMISSIONS, f"{method} {route.path} names no permission"


def test_cookie_flags_in_development(client: TestClient, env: Env) -> None:
    username = add_account(env)
    response = sign_in(_fresh(client), username)
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("dxassist_session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP on loopback in development


def test_cookie_is_secure_and_host_prefixed_outside_development(tmp_path: Path, env: Env) -> None:
    settings = make_settings(
        tmp_path, environment="production", database_url=f"sqlite:///{tmp_path / 'record.db'}"
    )
    import tiny_models

    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        record = Record(settings.record_url)
        from inference.services import add_user

        add_user(record, username="dr.prod", password=PASSWORD, role="radiologist", facility="F1")
        record.close()
        form = client.get("/ui/signin")
        signin_cookie = form.headers["set-cookie"].lower()
        assert (
            "secure" in signin_cookie and "httponly" in signin_cookie and "samesite=strict" in signin_cookie
        )
        response = client.post(
            "/ui/signin",
            data={"username": "dr.prod", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert response.status_code == 303
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-dxassist_session=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
        assert not any(f.startswith("domain=") for f in flags)
        assert client.get("/ui/").status_code == 200


def test_sign_in_needs_the_form_token(client: TestClient, env: Env) -> None:
    username = add_account(env)
    client = _fresh(client)
    client.get("/ui/signin")
    response = client.post(
        "/ui/signin", data={"username": username, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    response = client.post(
        "/ui/signin",
        data={"username": username, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert not any("dxassist_session" in c for c in response.headers.get_list("set-cookie"))


def test_every_form_of_a_session_needs_its_csrf_token(client: TestClient, env: Env) -> None:
    result = send_study(client, env, critical=True)
    rid = result["result_id"]
    username = add_account(env)
    client = _fresh(client)
    assert sign_in(client, username).status_code == 303
    viewer = client.get(f"/ui/results/{rid}")
    token = csrf_of(viewer.text)
    code = next(f["code"] for f in result["findings"] if f["positive"])
    forms = [
        (f"/ui/results/{rid}/feedback", {"code": code, "verdict": "agree"}),
        (f"/ui/results/{rid}/read", {}),
        ("/ui/signout", {}),
    ]
    for path, data in forms:
        for sent in (None, "x" * 43):
            body = dict(data) if sent is None else {**data, "csrf_token": sent}
            response = client.post(path, data=body, follow_redirects=False)
            assert response.status_code == 403, (path, sent, response.status_code)
    # nothing happened: still open, still signed in
    assert rid in client.get("/ui/").text
    for path, data in forms[:2]:
        response = client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303, path
    assert rid not in client.get("/ui/").text


def test_lockout_after_repeated_failures_even_for_the_right_password(client: TestClient, env: Env) -> None:
    username = add_account(env)
    client = _fresh(client)
    attempts = env.settings.ui.ui_lockout_attempts
    for _ in range(attempts - 1):
        response = sign_in(client, username, password="wrong password!")
        assert response.status_code == 401 and "not correct" in response.text
    response = sign_in(client, username, password="wrong password!")
    assert response.status_code == 401 and "locked" in response.text
    response = sign_in(client, username)  # the right password, too late
    assert response.status_code == 401 and "locked" in response.text
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=f"web:{username}")
    finally:
        record.close()
    outcomes = [e["outcome"] for e in events if e["action"] == "ui:sign_in"]
    assert outcomes.count("failure") == attempts - 1 and outcomes.count("locked") == 2
    # As FHIR AuditEvents: IHE ATNA User Authentication (DICOM 110114), action E, failures outcome 4.
    from inference.record.fhir import audit_events

    rendered = [audit_events.audit_event(e) for e in events if e["action"] == "ui:sign_in"]
    assert {(r["type"]["code"], r["action"]) for r in rendered} == {("110114", "E")}
    assert {r["outcome"] for r in rendered} == {"4"}


def test_unknown_user_and_disabled_account_get_the_same_answer(client: TestClient, env: Env) -> None:
    client = _fresh(client)
    unknown = sign_in(client, f"nobody-{uuid.uuid4().hex[:6]}")
    username = add_account(env)
    record = Record(env.settings.record_url)
    from inference.services import disable_user

    disable_user(record, username=username)
    record.close()
    disabled = sign_in(client, username)
    assert unknown.status_code == disabled.status_code == 401
    assert re.findall(r'role="alert">([^<]+)<', unknown.text) == re.findall(
        r'role="alert">([^<]+)<', disabled.text
    )


def test_sessions_expire_when_idle_and_end_at_sign_out(client: TestClient, env: Env) -> None:
    username = add_account(env)
    client = _fresh(client)
    sign_in(client, username)
    assert client.get("/ui/").status_code == 200
    record = Record(env.settings.record_url)
    try:
        idle = timedelta(minutes=env.settings.ui.ui_session_idle_minutes + 1)
        with record.sessions() as session, session.begin():
            session.execute(
                update(WebSession)
                .where(WebSession.username == username)
                .values(last_seen=datetime.now(UTC) - idle)
            )
    finally:
        record.close()
    response = client.get("/ui/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/signin"

    sign_in(client, username)
    page = client.get("/ui/")
    response = client.post("/ui/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    stale = page.request.headers.get("cookie")
    client.cookies.clear()
    response = client.get("/ui/", headers={"cookie": stale}, follow_redirects=False)
    assert response.status_code == 303, "a signed-out session still opened the worklist"


def test_no_patient_data_in_urls_titles_or_logs(client: TestClient, env: Env) -> None:
    result = send_study(client, env, critical=True)
    vitals = send_vitals(client, env, respiratory_rate=28)
    username = add_account(env, facility=None, role="admin")
    client = _fresh(client)
    sign_in(client, username)
    identifiers = [result["patient"]["identifier"], vitals["patient"]["identifier"]]
    worklist = client.get("/ui/")
    viewer = client.get(f"/ui/results/{result['result_id']}")
    triage = client.get(f"/ui/results/{vitals['result_id']}")
    assert identifiers[0] in worklist.text  # shown on the page...
    for page in (worklist, viewer, triage):
        title = re.search(r"<title>(.*?)</title>", page.text, re.S)
        assert title and not any(i in title.group(1) for i in identifiers)  # ...never in a title
        links = re.findall(r'(?:href|src|action)="([^"]+)"', page.text)
        for link in links:
            assert not any(i in link for i in identifiers), link
            assert re.fullmatch(r"[\w/.\-?=#%&]*", link), link
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-security-policy"] == PAGE_CSP
        assert page.headers["referrer-policy"] == "no-referrer"
    log = (env.settings.log_dir / LOG_FILE).read_text(encoding="utf-8")
    assert not any(i in log for i in identifiers)


def test_page_access_is_audited_like_the_api(client: TestClient, env: Env) -> None:
    result = send_study(client, env, critical=True)
    username = add_account(env)
    client = _fresh(client)
    sign_in(client, username)
    client.get(f"/ui/results/{result['result_id']}")
    clinician = add_account(env, role="clinician")
    client = _fresh(client)
    sign_in(client, clinician)
    assert client.get("/ui/").status_code == 403  # worklist:read is not a clinician's
    record = Record(env.settings.record_url)
    try:
        _n, reads = record.audit.search(agent=f"web:{username}")
        _m, denials = record.audit.search(agent=f"web:{clinician}")
    finally:
        record.close()
    assert any(
        e["action"] == "results:read"
        and e["outcome"] == "success"
        and e["resource_id"] == result["result_id"]
        for e in reads
    )
    assert any(e["action"] == "worklist:read" and e["outcome"] == "denied" for e in denials)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_documentation_loads_nothing_from_outside(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    for url in re.findall(r'(?:href|src)="([^"]+)"', page.text):
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    assert "https://" not in page.text and "http://" not in page.text


def test_the_root_sends_the_browser_to_the_pages(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/ui/"
