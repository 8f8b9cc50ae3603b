"""Single sign-on of the pages with a real OpenID Connect provider (IdentityPython's ``idpyoidc`` server on
loopback, :mod:`_oidc_provider`): the browser's round trip followed by hand, an account provisioned with
``dxassist user add`` signing in through the provider, and every way the answer can be wrong refused with
the sign-in page and an audit entry."""

from __future__ import annotations

import asyncio
import html
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest
from _api_env import make_settings  # noqa: I001  (the API tests' helpers, on the path through _ui_live)
from _oidc_provider import CLIENT_ID, CLIENT_SECRET, OTHER_CLIENT_ID, Provider, oidc_provider, query
from _ui_live import (
    PASSWORD,
    Env,
    TestClient,
    add_account,
    browser,
    csrf_of,
    live_server,
    send_study,
    sign_in,
)

from inference.api import create_app
from inference.api._app import LOG_FILE
from inference.api.ui._render import PAGE_CSP
from inference.record import Accounts, Record
from inference.services import disable_user

CALLBACK = "http://testserver/ui/sso/callback"
DISPLAY = "Hôpital ID"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider(CALLBACK) as running:
        yield running


@pytest.fixture(scope="module")
def sso(env: Env, provider: Provider) -> Iterator[TestClient]:
    """The API of ``env`` with single sign-on through ``provider``."""
    settings = make_settings(
        env.home, ui_oidc_issuer=provider.issuer, ui_oidc_client_id=CLIENT_ID,
        ui_oidc_client_secret=CLIENT_SECRET, ui_oidc_display_name=DISPLAY,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def browser_session(sso: TestClient, provider: Provider) -> Iterator[TestClient]:
    """``sso`` with no cookies, the provider vouching for nobody in particular and behaving."""
    sso.cookies.clear()
    provider.tamper_id_token, provider.foreign_key = {}, False
    yield sso
    sso.cookies.clear()
    provider.tamper_id_token, provider.foreign_key = {}, False


def _to_provider(client: TestClient) -> str:
    """Click "Sign in with ...": the provider's authorization URL the pages send the browser to."""
    page = client.get("/ui/signin")
    assert 'href="/ui/sso/start"' in page.text
    response = client.get("/ui/sso/start", follow_redirects=False)
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


def _at_provider(url: str) -> str:
    """The provider approves (as ``Provider.sign_in_as`` chose): the URL it sends the browser back to."""
    response = httpx.get(url, follow_redirects=False, timeout=30)
    assert response.status_code == 302, response.text
    location = str(response.headers["location"])
    assert location.startswith(CALLBACK + "?")
    return location


def _replace(url: str, **values: str) -> str:
    parts = urlsplit(url)
    params = query(url)
    params.update(values)
    return urlunsplit(parts._replace(query=urlencode(params)))


def _sso_audit(env: Env, since: datetime, agent: str) -> list[dict[str, Any]]:
    # A web user is ``web:<username>`` on the trail; the placeholder of a refused sign-in is itself.
    subject = agent if agent == "unknown-user" else f"web:{agent}"
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=subject, since=since, limit=500)
    finally:
        record.close()
    return [e for e in events if e["action"] == "ui:sign_in" and e["resource_id"] == "oidc"]


def _alert(html: str) -> str:
    found = re.findall(r'role="alert">([^<]+)<', html)
    assert found, "the page says nothing"
    return str(found[0])


def _refused(response: httpx.Response, client: TestClient) -> None:
    """The sign-in page again, with the generic message, and no session."""
    assert response.status_code == 401, response.text
    assert "Single sign-on did not succeed" in _alert(response.text)
    assert 'name="username"' in response.text  # the local sign-in is offered again
    assert not any("dxassist_session" in c for c in response.headers.get_list("set-cookie"))
    assert client.get("/ui/", follow_redirects=False).status_code == 303  # to the sign-in page


def test_a_provisioned_account_signs_in_through_the_provider_and_sees_its_facility(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    client = browser_session
    own = send_study(client, env, critical=True, facility="F1")
    other = send_study(client, env, critical=True, facility="F2")
    username = add_account(env, facility="F1")
    provider.sign_in_as(username)
    since = datetime.now(UTC)

    authorization = _to_provider(client)
    assert authorization.startswith(provider.issuer + "/authorization?")
    sent = query(authorization)
    assert sent["client_id"] == CLIENT_ID and sent["redirect_uri"] == CALLBACK
    assert sent["response_type"] == "code" and sent["code_challenge_method"] == "S256"
    assert set(sent["scope"].split()) >= {"openid", "profile"}
    assert sent["state"] and sent["nonce"] and sent["code_challenge"]
    answer = _at_provider(authorization)
    landed = client.get(answer, follow_redirects=False)

    assert landed.status_code == 200, landed.text
    assert landed.headers["content-security-policy"] == PAGE_CSP
    assert '<meta http-equiv="refresh" content="0;url=/ui/">' in landed.text
    cookie = next(c for c in landed.headers.get_list("set-cookie") if c.startswith("dxassist_session="))
    assert {"httponly", "samesite=strict", "path=/"} <= {p.strip().lower() for p in cookie.split(";")}
    worklist = client.get("/ui/")
    assert worklist.status_code == 200
    assert username in worklist.text  # the header names the reader
    assert own["patient"]["identifier"] in worklist.text
    assert other["patient"]["identifier"] not in worklist.text  # another facility's patient

    events = _sso_audit(env, since, username)
    assert [e["outcome"] for e in events] == ["success"]
    assert events[0]["facility"] == "F1" and events[0]["role"] == "radiologist"
    log = (env.settings.log_dir / LOG_FILE).read_text(encoding="utf-8")
    assert query(answer)["code"] not in log and sent["state"] not in log and sent["nonce"] not in log


def test_the_flow_cookie_is_lax_short_lived_and_the_session_cookie_stays_strict(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    client = browser_session
    client.get("/ui/signin")
    response = client.get("/ui/sso/start", follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("dxassist_sso="))
    flags = {p.strip().lower() for p in cookie.split(";")}
    assert {"httponly", "samesite=lax", "path=/", "max-age=600"} <= flags
    username = add_account(env)
    provider.sign_in_as(username)
    landed = client.get(_at_provider(str(response.headers["location"])), follow_redirects=False)
    assert landed.status_code == 200
    cleared = next(c for c in landed.headers.get_list("set-cookie") if c.startswith("dxassist_sso="))
    assert "max-age=0" in cleared.lower()  # the flow is used up


def test_an_unknown_username_is_refused_and_audited_without_naming_it(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    stranger = f"nobody-{uuid.uuid4().hex[:8]}"
    provider.sign_in_as(stranger)
    since = datetime.now(UTC)
    response = browser_session.get(_at_provider(_to_provider(browser_session)), follow_redirects=False)
    _refused(response, browser_session)
    assert stranger not in response.text
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure"]
    assert _sso_audit(env, since, stranger) == []
    assert stranger not in (env.settings.log_dir / LOG_FILE).read_text(encoding="utf-8")


def test_a_disabled_account_is_refused_like_an_unknown_one(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    record = Record(env.settings.record_url)
    try:
        disable_user(record, username=username)
    finally:
        record.close()
    provider.sign_in_as(username)
    since = datetime.now(UTC)
    disabled = browser_session.get(_at_provider(_to_provider(browser_session)), follow_redirects=False)
    _refused(disabled, browser_session)
    assert [e["outcome"] for e in _sso_audit(env, since, username)] == ["failure"]

    provider.sign_in_as(f"nobody-{uuid.uuid4().hex[:8]}")
    unknown = browser_session.get(_at_provider(_to_provider(browser_session)), follow_redirects=False)
    assert _alert(unknown.text) == _alert(disabled.text)  # which usernames exist is not told


def test_a_tampered_state_or_an_answer_without_the_flow_cookie_is_refused(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    provider.sign_in_as(username)
    since = datetime.now(UTC)
    client = browser_session
    answer = _at_provider(_to_provider(client))
    tokens_before = provider.token_requests
    _refused(client.get(_replace(answer, state="x" * 43), follow_redirects=False), client)

    # An answer meant for another browser (login CSRF): this one started no flow.
    answer = _at_provider(_to_provider(client))
    client.cookies.clear()
    _refused(client.get(answer, follow_redirects=False), client)
    assert provider.token_requests == tokens_before  # the code was never even redeemed
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure", "failure"]


def test_a_replayed_code_is_refused_by_the_provider_and_here(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    provider.sign_in_as(username)
    client = browser_session
    authorization = _to_provider(client)
    flow = client.cookies.get("dxassist_sso")
    answer = _at_provider(authorization)
    assert client.get(answer, follow_redirects=False).status_code == 200
    since = datetime.now(UTC)

    # The same answer again, with the same flow cookie (a copied browser history, a leaked URL).
    client.cookies.clear()
    client.cookies.set("dxassist_sso", flow)
    before = provider.token_requests
    _refused(client.get(answer, follow_redirects=False), client)
    assert provider.token_requests == before + 1  # the provider was asked, and refused the used code
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure"]


def test_an_id_token_with_another_nonce_is_refused(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    provider.sign_in_as(username)
    since = datetime.now(UTC)
    authorization = _to_provider(browser_session)
    # The provider signs whatever nonce it was sent: one of another flow (a replayed ID token's).
    answer = _at_provider(_replace(authorization, nonce="n" * 43))
    _refused(browser_session.get(answer, follow_redirects=False), browser_session)
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure"]
    assert _sso_audit(env, since, username) == []


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": OTHER_CLIENT_ID},
        {"aud": [OTHER_CLIENT_ID, CLIENT_ID]},  # several audiences, and we are not the authorized party
        {"azp": OTHER_CLIENT_ID},  # for us, but obtained by another client (OIDC Core 3.1.3.7 step 5)
        {"iss": "https://impostor.example"},
        {"exp": int(time.time()) - 3600},
    ],
    ids=["audience", "audiences-without-azp", "azp-of-another-client", "issuer", "expired"],
)
def test_an_id_token_for_another_audience_issuer_or_time_is_refused(
    browser_session: TestClient, provider: Provider, env: Env, claims: dict[str, Any]
) -> None:
    username = add_account(env)
    provider.sign_in_as(username)
    provider.tamper_id_token = claims
    since = datetime.now(UTC)
    answer = _at_provider(_to_provider(browser_session))
    _refused(browser_session.get(answer, follow_redirects=False), browser_session)
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure"]


def test_an_id_token_signed_with_a_key_the_provider_does_not_publish_is_refused(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    provider.sign_in_as(username)
    provider.foreign_key = True
    since = datetime.now(UTC)
    answer = _at_provider(_to_provider(browser_session))
    _refused(browser_session.get(answer, follow_redirects=False), browser_session)
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure"]


def test_an_id_token_signed_again_by_the_provider_with_harmless_changes_is_accepted(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    # The control of the test above: the re-signing itself is sound, only the claims it changed are not.
    username = add_account(env)
    provider.sign_in_as(username)
    provider.tamper_id_token = {
        "name": "Dr Someone Else",
        "aud": [CLIENT_ID, OTHER_CLIENT_ID],
        "azp": CLIENT_ID,
    }
    since = datetime.now(UTC)
    landed = browser_session.get(_at_provider(_to_provider(browser_session)), follow_redirects=False)
    assert landed.status_code == 200, landed.text
    assert [e["outcome"] for e in _sso_audit(env, since, username)] == ["success"]


def test_an_error_from_the_provider_is_refused(browser_session: TestClient, env: Env) -> None:
    authorization = _to_provider(browser_session)
    state = query(authorization)["state"]
    denied = f"{CALLBACK}?{urlencode({'error': 'access_denied', 'state': state})}"
    _refused(browser_session.get(denied, follow_redirects=False), browser_session)


def test_the_local_sign_in_still_works_beside_single_sign_on(browser_session: TestClient, env: Env) -> None:
    page = browser_session.get("/ui/signin")
    assert re.search(r'<label for="username">Username</label>', page.text)
    assert re.search(r'<label for="password">Password</label>', page.text)
    assert '<button type="submit" class="primary">Sign in</button>' in page.text
    assert f'<a class="button" href="/ui/sso/start">Sign in with {DISPLAY}</a>' in page.text
    french = browser_session.get("/ui/signin", headers={"Accept-Language": "fr"})
    assert f"Se connecter avec {DISPLAY}" in french.text
    username = add_account(env)
    response = sign_in(browser_session, username)
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    assert browser_session.get("/ui/").status_code == 200
    wrong = sign_in(browser_session, username, password="not the password")
    assert wrong.status_code == 401 and "not correct" in _alert(wrong.text)


def test_single_sign_on_is_there_with_an_issuer_and_only_then(
    client: TestClient, browser_session: TestClient
) -> None:
    client.cookies.clear()
    page = client.get("/ui/signin")
    assert page.status_code == 200 and "/ui/sso" not in page.text and "Sign in with" not in page.text
    assert client.get("/ui/sso/start", follow_redirects=False).status_code == 404
    assert client.get("/ui/sso/callback?code=x&state=y", follow_redirects=False).status_code == 404
    # The same pages with an issuer: the link, and the route that follows it.
    assert "Sign in with" in browser_session.get("/ui/signin").text
    assert browser_session.get("/ui/sso/start", follow_redirects=False).status_code == 302


def test_an_unreachable_provider_gets_a_clear_page_not_a_traceback(env: Env) -> None:
    from _loopback import free_port

    settings = make_settings(
        env.home, ui_oidc_issuer=f"http://127.0.0.1:{free_port()}", ui_oidc_client_id=CLIENT_ID
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/ui/sso/start", follow_redirects=False)
        assert response.status_code == 503
        assert "identity provider does not answer" in _alert(response.text)
        assert 'name="username"' in response.text  # the password sign-in stays at hand
        form = client.get("/ui/signin")
        username = add_account(env)
        signed = client.post(
            "/ui/signin",
            data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert signed.status_code == 303


@pytest.mark.integration
def test_a_reader_signs_in_through_the_provider_in_a_real_browser(env: Env) -> None:
    """Debian's Chromium, the pages on 127.0.0.1 and the provider on ``localhost``: two sites, so the
    browser applies its SameSite rules to the flow cookie and the session cookie as it would in a hospital."""
    with oidc_provider("http://unused.invalid/", host="localhost") as idp, browser() as chromium:
        settings = make_settings(
            env.home, ui_oidc_issuer=idp.issuer, ui_oidc_client_id=CLIENT_ID,
            ui_oidc_client_secret=CLIENT_SECRET, ui_oidc_display_name=DISPLAY,
        )  # fmt: skip
        with live_server(create_app(settings)) as base:
            idp.register(CLIENT_ID, CLIENT_SECRET, f"{base}/ui/sso/callback")
            username = add_account(env, facility="F1")
            idp.sign_in_as(username)
            idp.consent = True
            page = chromium.new_page()
            try:
                page.goto(f"{base}/ui/")
                page.get_by_role("link", name=f"Sign in with {DISPLAY}").click()
                page.get_by_role("link", name="Approve").click()  # on the provider's site
                page.wait_for_url(f"{base}/ui/")
                expect = page.get_by_role("columnheader", name="Priority")
                expect.wait_for()
                assert username in page.get_by_role("banner").inner_text()
                page.get_by_role("button", name="Sign out").click()
                page.wait_for_url(f"{base}/ui/signin")
                assert page.get_by_role("button", name="Sign in").is_visible()
            finally:
                page.close()


def test_behind_a_proxy_the_provider_sends_the_browser_back_to_the_public_address(
    env: Env, provider: Provider
) -> None:
    settings = make_settings(
        env.home, ui_oidc_issuer=provider.issuer, ui_oidc_client_id=CLIENT_ID,
        public_base_url="https://dxassist.hospital.example",
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        response = client.get("/ui/sso/start", headers={"Host": "internal:8000"}, follow_redirects=False)
    assert response.status_code == 302
    assert query(response.headers["location"])["redirect_uri"] == (
        "https://dxassist.hospital.example/ui/sso/callback"
    )


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"ui_oidc_issuer": "http://idp.hospital.example/realms/h", "ui_oidc_client_id": "x"}, "https"),
        ({"ui_oidc_issuer": "https://idp.hospital.example/realms/h"}, "DXASSIST_UI_OIDC_CLIENT_ID"),
    ],
    ids=["plain-http", "no-client-id"],
)
def test_an_unusable_provider_setting_is_refused_at_start(
    env: Env, values: dict[str, str], says: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=says):
        make_settings(env.home, **values)


def test_an_account_added_for_single_sign_on_only_has_no_password_that_works(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    from _dxassist_cli import DXASSIST, dxassist_env

    username = f"dr.sso-{uuid.uuid4().hex[:6]}"
    add = subprocess.run(
        [str(DXASSIST), "user", "add", "--username", username, "--role", "radiologist", "--facility", "F1",
         "--sso-only"],
        env=dxassist_env(env.home), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    for guess in ("", "!sso-only", PASSWORD):
        refused = sign_in(browser_session, username, password=guess)
        assert refused.status_code == 401 and "not correct" in _alert(refused.text)
    provider.sign_in_as(username)
    landed = browser_session.get(_at_provider(_to_provider(browser_session)), follow_redirects=False)
    assert landed.status_code == 200
    assert browser_session.get("/ui/").status_code == 200


# -- the account bound to the provider's subject (iss, sub) -------------------------------------------


def _user(env: Env, provider: Provider, *args: str) -> subprocess.CompletedProcess[str]:
    """``dxassist user ARGS`` on ``env``'s home, single sign-on configured as the pages have it."""
    from _dxassist_cli import DXASSIST, dxassist_env

    environment = dxassist_env(env.home) | {
        "DXASSIST_UI_OIDC_ISSUER": provider.issuer, "DXASSIST_UI_OIDC_CLIENT_ID": CLIENT_ID,
    }  # fmt: skip
    return subprocess.run(
        [str(DXASSIST), "user", *args], env=environment, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def _listed(env: Env, provider: Provider, username: str) -> list[str]:
    """The cells of ``username``'s row in ``dxassist user list``."""
    listing = _user(env, provider, "list")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert "sso subject" in header
    row = next(r for r in rows if r.split()[0] == username)
    return [cell.strip() for cell in re.split(r"\s{2,}", row.strip())]


def _trail(env: Env, since: datetime, action: str) -> list[dict[str, Any]]:
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(since=since, limit=500)
    finally:
        record.close()
    return [e for e in events if e["action"] == action]


def _sso_sign_in(client: TestClient) -> httpx.Response:
    client.cookies.clear()
    return client.get(_at_provider(_to_provider(client)), follow_redirects=False)


def test_the_first_single_sign_on_binds_the_account_and_another_person_under_its_username_is_refused(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    assert _listed(env, provider, username)[4:6] == ["password or sso", "-"]
    since = datetime.now(UTC)
    provider.sign_in_as(username)
    assert _sso_sign_in(browser_session).status_code == 200
    assert _listed(env, provider, username)[5] == "bound"
    bound = _trail(env, since, "ui:sso_bind")
    assert [(e["subject"], e["outcome"], e["resource_id"]) for e in bound] == [
        (f"web:{username}", "success", username)
    ]

    # The provider gives the username to another person (recycled, or renamed): another ``sub``.
    provider.sign_in_as(username, person=f"successor-{uuid.uuid4().hex[:6]}")
    since = datetime.now(UTC)
    refused = _sso_sign_in(browser_session)
    _refused(refused, browser_session)
    assert [e["outcome"] for e in _sso_audit(env, since, "unknown-user")] == ["failure"]
    assert _sso_audit(env, since, username) == []
    assert _trail(env, since, "ui:sso_bind") == []
    # The account's own person still signs in.
    provider.sign_in_as(username)
    assert _sso_sign_in(browser_session).status_code == 200


def test_a_subject_given_at_provisioning_binds_the_account_up_front(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = f"dr.sso-{uuid.uuid4().hex[:6]}"
    person = f"person-{uuid.uuid4().hex[:6]}"
    since = datetime.now(UTC)
    add = _user(
        env, provider, "add", "--username", username, "--role", "radiologist", "--facility", "F1",
        "--sso-only", "--sso-subject", provider.subject_of(person),
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert _listed(env, provider, username)[4:6] == ["sso only", "bound"]
    assert [e["resource_id"] for e in _trail(env, since, "user:sso_bind")] == [username]

    # The first to sign in under this username is not the person provisioned: refused, nothing bound.
    provider.sign_in_as(username)
    _refused(_sso_sign_in(browser_session), browser_session)
    provider.sign_in_as(username, person=person)
    assert _sso_sign_in(browser_session).status_code == 200
    assert browser_session.get("/ui/").status_code == 200


def test_an_administrator_unbinds_an_account_and_its_next_single_sign_on_binds_it_again(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    username = add_account(env)
    provider.sign_in_as(username)
    assert _sso_sign_in(browser_session).status_code == 200
    successor = f"new-account-{uuid.uuid4().hex[:6]}"  # the person's new account at the provider
    provider.sign_in_as(username, person=successor)
    _refused(_sso_sign_in(browser_session), browser_session)

    since = datetime.now(UTC)
    unbind = _user(env, provider, "sso-unbind", username)
    assert unbind.returncode == 0, unbind.stderr
    assert _listed(env, provider, username)[5] == "-"
    assert [e["resource_id"] for e in _trail(env, since, "user:sso_unbind")] == [username]
    assert _sso_sign_in(browser_session).status_code == 200  # the new account binds
    assert _listed(env, provider, username)[5] == "bound"
    provider.sign_in_as(username)  # and the old one no longer signs in
    _refused(_sso_sign_in(browser_session), browser_session)
    assert _user(env, provider, "sso-unbind", "nobody-at-all").returncode == 1


def test_an_account_bound_at_the_former_provider_is_refused_with_the_way_out_in_the_log(
    browser_session: TestClient, provider: Provider, env: Env
) -> None:
    # The hospital moved to another identity provider (DXASSIST_UI_OIDC_ISSUER changed).
    username = add_account(env)
    record = Record(env.settings.record_url)
    try:
        assert Accounts(record).bind_sso(
            username=username, issuer="https://old-idp.hospital.example/realms/h", subject=username
        )
    finally:
        record.close()
    provider.sign_in_as(username)
    _refused(_sso_sign_in(browser_session), browser_session)
    log = (env.settings.log_dir / LOG_FILE).read_text(encoding="utf-8")
    assert "bound at another identity provider" in log and "sso-unbind" in log
    assert _user(env, provider, "sso-unbind", username).returncode == 0
    assert _sso_sign_in(browser_session).status_code == 200


# -- sign-out at the provider too (OpenID Connect RP-Initiated Logout 1.0) ----------------------------

SIGNIN = "http://testserver/ui/signin"


@pytest.fixture(scope="module")
def logout_provider() -> Iterator[Provider]:
    """A provider with an end-session endpoint, where the pages registered their sign-in page."""
    with oidc_provider(CALLBACK, post_logout_redirect_uri=SIGNIN) as running:
        yield running


@pytest.fixture
def logout_client(env: Env, logout_provider: Provider) -> Iterator[TestClient]:
    settings = make_settings(
        env.home, ui_oidc_issuer=logout_provider.issuer, ui_oidc_client_id=CLIENT_ID,
        ui_oidc_client_secret=CLIENT_SECRET,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield client


def _sign_out(client: TestClient) -> httpx.Response:
    page = client.get("/ui/")
    assert page.status_code == 200
    return client.post("/ui/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)


def test_a_single_sign_on_session_signs_out_at_the_provider_too_and_a_password_session_stays_local(
    logout_client: TestClient,
    logout_provider: Provider,
    browser_session: TestClient,
    provider: Provider,
    env: Env,
) -> None:
    client = logout_client
    username = add_account(env)
    logout_provider.sign_in_as(username)
    assert _sso_sign_in(client).status_code == 200
    since = datetime.now(UTC)

    signed_out = _sign_out(client)
    assert signed_out.status_code == 200, signed_out.text
    assert signed_out.headers["content-security-policy"] == PAGE_CSP  # form-action 'self' stays
    cleared = next(c for c in signed_out.headers.get_list("set-cookie") if c.startswith("dxassist_session="))
    assert "max-age=0" in cleared.lower()
    found = re.search(r'<meta http-equiv="refresh" content="0;url=([^"]+)">', signed_out.text)
    assert found, signed_out.text
    at_provider = html.unescape(found.group(1))
    assert at_provider.startswith(logout_provider.issuer + "/end_session?")
    sent = query(at_provider)
    assert sent["post_logout_redirect_uri"] == SIGNIN and sent["client_id"] == CLIENT_ID
    assert sent["id_token_hint"].count(".") == 2
    # The local session is gone before the browser even reaches the provider.
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    assert [e["action"] for e in _trail(env, since, "ui:sign_out") if e["subject"] == f"web:{username}"] == [
        "ui:sign_out"
    ]

    # The provider verifies the hint, ends its session and sends the browser back to the sign-in page.
    back = httpx.get(at_provider, follow_redirects=False, timeout=30)
    assert back.status_code == 302, back.text
    assert back.headers["location"] == SIGNIN
    assert logout_provider.signed_out[-1]["sub"] == logout_provider.subject_of(username)
    assert sent["id_token_hint"] not in (env.settings.log_dir / LOG_FILE).read_text(encoding="utf-8")

    # A password session of the same pages signs out of the pages only, as before.
    client.cookies.clear()
    assert sign_in(client, username).status_code == 303
    before = len(logout_provider.signed_out)
    signed_out = _sign_out(client)
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/ui/signin"
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    assert len(logout_provider.signed_out) == before

    # So does a single sign-on session when the provider names no end-session endpoint.
    other = add_account(env)
    provider.sign_in_as(other)
    assert _sso_sign_in(browser_session).status_code == 200
    signed_out = _sign_out(browser_session)
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/ui/signin"
    assert browser_session.get("/ui/", follow_redirects=False).status_code == 303


def test_an_end_session_endpoint_with_a_fragment_is_not_used_and_the_sign_out_stays_local(
    logout_client: TestClient, logout_provider: Provider, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RP-Initiated Logout 1.0 allows no fragment: the hint and return address would land after it, in
    # a part of the URL the browser never sends, and the provider would show an error page instead.
    from inference.services import _sso

    monkeypatch.setattr(_sso, "_providers", {})  # this provider's document, read afresh
    monkeypatch.setattr(logout_provider, "end_session_suffix", "#logout")
    username = add_account(env)
    logout_provider.sign_in_as(username)
    assert _sso_sign_in(logout_client).status_code == 200
    signed_out = _sign_out(logout_client)
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/ui/signin"
    assert logout_client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_provider_that_is_down_is_asked_once_by_a_burst_of_sign_ins(env: Env) -> None:
    with oidc_provider(CALLBACK) as idp:
        idp.down = True
        settings = make_settings(env.home, ui_oidc_issuer=idp.issuer, ui_oidc_client_id=CLIENT_ID)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            for _ in range(8):  # readers pressing "Sign in with" again and again during the outage
                response = client.get("/ui/sso/start", follow_redirects=False)
                assert response.status_code == 503
                assert "identity provider does not answer" in _alert(response.text)
                assert 'name="username"' in response.text  # the password sign-in stays at hand
        assert idp.discovery_requests == 1


def test_a_provider_that_is_down_is_asked_once_by_sign_ins_arriving_together(env: Env) -> None:
    # The readers of a ward pressing "Sign in with" in the same second: they wait for one answer.
    from inference.services import SsoUnavailable, _sso

    async def burst(settings: Any) -> list[BaseException | object]:
        starts = (_sso.start(settings, redirect_uri=CALLBACK) for _ in range(8))
        return await asyncio.gather(*starts, return_exceptions=True)

    with oidc_provider(CALLBACK) as idp:
        idp.down = True
        settings = make_settings(env.home, ui_oidc_issuer=idp.issuer, ui_oidc_client_id=CLIENT_ID)
        outcomes = asyncio.run(burst(settings))
        assert all(isinstance(o, SsoUnavailable) for o in outcomes)
        assert idp.discovery_requests == 1
