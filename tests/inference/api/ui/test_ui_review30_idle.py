"""A worklist left open on a shared workstation: its refresh every 30 s is not the reader's activity, so
the session still ends after ``DXASSIST_UI_SESSION_IDLE_MINUTES`` and the page goes to the sign-in form."""

from __future__ import annotations

from datetime import UTC, timedelta

from _ui_live import Env, TestClient, add_account, send_study, sign_in  # noqa: I001
from sqlalchemy import select, update

from inference.record import Record
from inference.record._accounts import WebSession


def _move_idle_clock(env: Env, username: str, *, back: timedelta) -> None:
    """Move the session's last activity ``back`` into the past (as if that time had gone by)."""
    record = Record(env.settings.record_url)
    try:
        with record.sessions() as session, session.begin():
            seen = session.scalar(select(WebSession.last_seen).where(WebSession.username == username))
            assert seen is not None
            seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
            session.execute(
                update(WebSession).where(WebSession.username == username).values(last_seen=seen - back)
            )
    finally:
        record.close()


def test_a_worklist_refreshing_itself_does_not_keep_an_unattended_session_open(
    client: TestClient, env: Env
) -> None:
    result = send_study(client, env, critical=True)
    username = add_account(env)
    client.cookies.clear()
    assert sign_in(client, username).status_code == 303
    page = client.get("/ui/")
    assert page.status_code == 200 and result["patient"]["identifier"] in page.text
    idle = timedelta(minutes=env.settings.ui.ui_session_idle_minutes)

    # Nobody at the keyboard: the page keeps fetching its rows, which still come while the session is
    # within its idle time...
    _move_idle_clock(env, username, back=idle - timedelta(minutes=1))
    rows = client.get("/ui/worklist/rows", follow_redirects=False)
    assert rows.status_code == 200 and result["patient"]["identifier"] in rows.text
    # ...and two minutes of refreshing later the idle time has passed: the refresh is sent to sign in
    # (worklist.js then shows the sign-in form) instead of patient identifiers.
    _move_idle_clock(env, username, back=timedelta(minutes=2))
    rows = client.get("/ui/worklist/rows", follow_redirects=False)
    assert rows.status_code == 303 and rows.headers["location"] == "/ui/signin"
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_opening_a_page_is_activity_and_keeps_the_session(client: TestClient, env: Env) -> None:
    username = add_account(env)
    client.cookies.clear()
    assert sign_in(client, username).status_code == 303
    idle = timedelta(minutes=env.settings.ui.ui_session_idle_minutes)
    _move_idle_clock(env, username, back=idle - timedelta(minutes=1))
    assert client.get("/ui/", follow_redirects=False).status_code == 200  # the reader opened the worklist
    _move_idle_clock(env, username, back=timedelta(minutes=2))
    assert client.get("/ui/worklist/rows", follow_redirects=False).status_code == 200
