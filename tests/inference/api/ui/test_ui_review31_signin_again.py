"""Signing in again in a browser that has a session open ends that session (a workstation handed over
without signing out): its cookie no longer opens a page, and the audit trail shows its sign-out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from _api_env import make_settings  # noqa: I001  (the API tests' helpers, on the path through _ui_live)
from _oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, oidc_provider
from _ui_live import Env, TestClient, add_account, send_study, sign_in

from inference.api import create_app
from inference.record import Record

CALLBACK = "http://testserver/ui/sso/callback"


def _session_cookie(client: TestClient) -> str:
    value = client.cookies.get("dxassist_session")
    assert value, "no session cookie"
    return value


def _worklist_with(client: TestClient, token: str) -> httpx.Response:
    """The worklist asked for with this session cookie alone (the browser's other cookies kept aside)."""
    kept = httpx.Cookies(client.cookies)
    client.cookies.clear()
    try:
        return client.get("/ui/", headers={"cookie": f"dxassist_session={token}"}, follow_redirects=False)
    finally:
        client.cookies = kept


def _trail(env: Env, agent: str, since: datetime) -> list[str]:
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=f"web:{agent}", since=since, limit=500)
    finally:
        record.close()
    ordered = sorted(events, key=lambda e: e["seq"])
    return [f"{e['action']} {e['outcome']}" for e in ordered if e["action"].startswith("ui:sign")]


@pytest.mark.parametrize("same_reader", [True, False], ids=["same reader", "another reader"])
def test_a_new_sign_in_ends_the_session_the_browser_had_open(
    client: TestClient, env: Env, same_reader: bool
) -> None:
    result = send_study(client, env, critical=True)
    first = add_account(env)
    second = first if same_reader else add_account(env)
    since = datetime.now(UTC)
    client.cookies.clear()
    assert sign_in(client, first).status_code == 303
    old = _session_cookie(client)
    assert result["patient"]["identifier"] in client.get("/ui/").text

    # A wrong password leaves the open session as it was.
    assert sign_in(client, second, password="wrong password!").status_code == 401
    assert _worklist_with(client, old).status_code == 200

    assert sign_in(client, second).status_code == 303
    new = _session_cookie(client)
    assert new != old
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    stale = _worklist_with(client, old)
    assert stale.status_code == 303 and stale.headers["location"] == "/ui/signin"
    assert _worklist_with(client, new).status_code == 200

    # The old session's sign-out, under its own reader, before the new session's sign-in.
    if same_reader:
        assert _trail(env, first, since) == [
            "ui:sign_in success", "ui:sign_in failure", "ui:sign_out success", "ui:sign_in success"
        ]  # fmt: skip
    else:
        assert _trail(env, first, since) == ["ui:sign_in success", "ui:sign_out success"]
        assert _trail(env, second, since) == ["ui:sign_in failure", "ui:sign_in success"]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider(CALLBACK) as running:
        yield running


def test_a_single_sign_on_over_an_open_session_ends_it_too(env: Env, provider: Provider) -> None:
    settings = make_settings(
        env.home, ui_oidc_issuer=provider.issuer, ui_oidc_client_id=CLIENT_ID,
        ui_oidc_client_secret=CLIENT_SECRET,
    )  # fmt: skip
    first, second = add_account(env), add_account(env)
    since = datetime.now(UTC)
    with TestClient(create_app(settings)) as client:
        assert sign_in(client, first).status_code == 303
        old = _session_cookie(client)

        provider.sign_in_as(second)
        client.get("/ui/signin")
        start = client.get("/ui/sso/start", follow_redirects=False)
        answer = httpx.get(start.headers["location"], follow_redirects=False, timeout=30)
        landed = client.get(answer.headers["location"], follow_redirects=False)
        assert landed.status_code == 200, landed.text

        assert _session_cookie(client) != old
        assert _worklist_with(client, _session_cookie(client)).status_code == 200
        assert _worklist_with(client, old).status_code == 303
    assert _trail(env, first, since) == ["ui:sign_in success", "ui:sign_out success"]
