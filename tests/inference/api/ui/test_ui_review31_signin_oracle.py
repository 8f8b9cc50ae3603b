"""The sign-in form tells nobody which usernames exist: an unknown username, a wrong password and a locked
account get the same page, in every language; the lock still holds and is audited with its real reason."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from _ui_live import Env, TestClient, add_account, sign_in  # noqa: I001

from inference.record import Record


def _answer(response: httpx.Response) -> tuple[int, str]:
    """The status and the page without the form's one-time token (fresh on every page)."""
    return response.status_code, re.sub(r'name="csrf_token" value="[^"]+"', "", response.text)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_locked_account_answers_like_an_unknown_user_or_a_wrong_password(
    client: TestClient, env: Env, lang: str
) -> None:
    client.cookies.clear()
    client.cookies.set("dxassist_lang", lang)
    username = add_account(env)
    attempts = env.settings.ui.ui_lockout_attempts
    wrong = _answer(sign_in(client, username, password="wrong password!"))
    unknown = _answer(sign_in(client, f"nobody-{uuid.uuid4().hex[:6]}", password="wrong password!"))
    for _ in range(attempts - 2):
        sign_in(client, username, password="wrong password!")
    locking = _answer(sign_in(client, username, password="wrong password!"))  # this one locks it
    locked = _answer(sign_in(client, username))  # the right password, on a locked account
    assert wrong[0] == 401 and 'role="alert"' in wrong[1]
    assert unknown == wrong
    assert locking == wrong
    assert locked == wrong

    # The lock holds, and the audit trail keeps the real reason of each refusal.
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=f"web:{username}")
    finally:
        record.close()
    outcomes = [e["outcome"] for e in events if e["action"] == "ui:sign_in"]
    assert outcomes.count("failure") == attempts - 1 and outcomes.count("locked") == 2
    assert "success" not in outcomes
