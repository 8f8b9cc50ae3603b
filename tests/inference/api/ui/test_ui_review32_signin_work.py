"""A refused sign-in does the same work whatever its reason: a wrong password on a real account, an unknown
username, a disabled, a locked or a single-sign-on-only account each check one password hash, run the same
database transactions and statements, and write one audit entry of the same shape, and the page is the
same. A wrong password on a real account used to count its failure in a transaction of its own that an
unknown username skipped: a difference in work a stopwatch could tell apart (no timing is measured here;
the work is counted, as ``tests/inference/api/test_api_round_trips.py`` counts it).
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import tiny_models
from _api_env import make_settings
from _ui_live import PASSWORD, Env, TestClient, add_account, sign_in
from sqlalchemy import event

from inference.api import create_app
from inference.record import Record
from inference.services import add_user, disable_user

_IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)
WRONG = "not the password at all"


@dataclass
class Work:
    """Transactions and statements the record ran on behalf of HTTP requests."""

    transactions: int = 0
    statements: int = 0


def _marking(app: Any) -> Any:
    """``app`` with every HTTP request run with :data:`_IN_REQUEST` set (the lifespan is left alone)."""

    async def marked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        token = _IN_REQUEST.set(True)
        try:
            await app(scope, receive, send)
        finally:
            _IN_REQUEST.reset(token)

    return marked


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, Work]]:
    home = tmp_path_factory.mktemp("dxassist-signin-work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        tiny_models.seed_both(settings.model_cache, home / "build")
        env = Env(home=home, settings=settings)
        app = create_app(settings)
        work = Work()
        with TestClient(_marking(app)) as client:
            engine = app.state.ctx.record.engine

            def began(_connection: Any) -> None:
                if _IN_REQUEST.get():
                    work.transactions += 1

            def executed(*_args: Any) -> None:
                if _IN_REQUEST.get():
                    work.statements += 1

            event.listen(engine, "begin", began)
            event.listen(engine, "before_cursor_execute", executed)
            try:
                yield env, client, work
            finally:
                event.remove(engine, "begin", began)
                event.remove(engine, "before_cursor_execute", executed)


def _page(response: httpx.Response) -> tuple[int, str]:
    """The status and the page without the form's one-time token (fresh on every page)."""
    return response.status_code, re.sub(r'name="csrf_token" value="[^"]+"', "", response.text)


def _sign_ins(env: Env) -> list[dict]:
    record = Record(env.settings.record_url)
    try:
        entries = [e for e in record.audit.search(limit=500)[1] if e["action"] == "ui:sign_in"]
        return sorted(entries, key=lambda e: int(e["seq"]))
    finally:
        record.close()


def _refused(client: TestClient, env: Env, work: Work, username: str, password: str) -> tuple[Any, ...]:
    """What a refused sign-in answers, the database work it did and the audit entry it wrote."""
    client.cookies.clear()
    before = len(_sign_ins(env))
    form = client.get("/ui/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    work.transactions = work.statements = 0
    answer = client.post(
        "/ui/signin",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    done = (work.transactions, work.statements)
    entries = _sign_ins(env)[before:]
    assert len(entries) == 1, entries
    [entry] = entries
    shape = (
        entry["action"],
        entry["outcome"],
        entry["resource_type"],
        entry["resource_id"],
        entry["patient_id"],
    )
    return _page(answer), done, shape


def test_every_refused_sign_in_does_the_same_work_and_answers_the_same(
    counted: tuple[Env, TestClient, Work],
) -> None:
    env, client, work = counted
    real = add_account(env)
    disabled, sso_only = add_account(env), f"dr.{uuid.uuid4().hex[:8]}"
    record = Record(env.settings.record_url)
    try:
        disable_user(record, username=disabled)
        add_user(record, username=sso_only, password=None, role="radiologist", facility="F1")
    finally:
        record.close()
    wrong = _refused(client, env, work, real, WRONG)
    unknown = _refused(client, env, work, f"dr.{uuid.uuid4().hex[:8]}", WRONG)
    assert wrong[0][0] == 401
    assert unknown == wrong  # the page, the transactions and statements, the audit entry's shape
    assert _refused(client, env, work, disabled, PASSWORD) == wrong
    assert _refused(client, env, work, sso_only, WRONG) == wrong
    # The trail still names the account a guess was made on (and no account for an unknown username).
    subjects = [e["subject"] for e in _sign_ins(env)[-4:]]
    assert subjects[0] == f"web:{real}" and subjects[1] == "unknown-user"
    # A locked account, even given the right password: the same work; only the trail says why.
    for _ in range(env.settings.ui.ui_lockout_attempts):
        client.cookies.clear()
        assert sign_in(client, real, password=WRONG).status_code == 401
    locked = _refused(client, env, work, real, PASSWORD)
    assert locked[:2] == wrong[:2]
    assert locked[2][1] == "locked" and locked[2][:1] + locked[2][2:] == wrong[2][:1] + wrong[2][2:]
