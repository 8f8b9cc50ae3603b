"""The pages' forms take what the API's JSON fields take: a form field (or a page's query parameter)
holding a control or invisible formatting character is refused with a page that says so, and nothing is
written: no verdict, no audit entry, no sign-in attempt. A password is the exception: only its hash is
kept, and its holder chose it."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from _ui_live import Env, TestClient, add_account, csrf_of, send_study, sign_in  # noqa: I001

from inference.api.ui._i18n import translations
from inference.record import Record
from inference.services import add_user

REFUSED = "Invisible characters refused"


def _trail(env: Env, **filters: object) -> list[dict]:
    record = Record(env.settings.record_url)
    try:
        return record.audit.search(limit=500, **filters)[1]
    finally:
        record.close()


def _verdicts(env: Env, result_id: str) -> list[object]:
    record = Record(env.settings.record_url)
    try:
        return list(record.feedback.for_result(result_id=result_id))
    finally:
        record.close()


@pytest.mark.parametrize("hidden", ["\u202e", "\u0085", "\u2028", "\x1b", "\n"])
def test_a_verdict_form_with_a_hidden_character_is_refused_and_nothing_is_written(
    client: TestClient, env: Env, hidden: str
) -> None:
    result = send_study(client, env, critical=True)
    rid, code = result["result_id"], result["findings"][0]["code"]
    client.cookies.clear()
    username = add_account(env)
    assert sign_in(client, username).status_code == 303
    token = csrf_of(client.get(f"/ui/results/{rid}").text)
    before = _trail(env, agent=f"web:{username}")
    # The finding's code, a right-to-left override (or a control) in it: the API's JSON field refuses it.
    answer = client.post(
        f"/ui/results/{rid}/feedback",
        data={
            "code": f"{code}{hidden}",
            "verdict": "disagree",
            "correct_label": "absent",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 422, answer.text
    assert REFUSED in answer.text and "nothing was saved" in answer.text
    assert _verdicts(env, rid) == []
    assert _trail(env, agent=f"web:{username}") == before
    # The same form, typed again without it, is taken.
    again = client.post(
        f"/ui/results/{rid}/feedback",
        data={"code": code, "verdict": "disagree", "correct_label": "absent", "csrf_token": token},
        follow_redirects=False,
    )
    assert again.status_code == 303, again.text
    assert len(_verdicts(env, rid)) == 1


def test_a_page_s_query_parameter_with_a_bidi_override_is_refused_in_the_reader_s_language(
    client: TestClient, env: Env
) -> None:
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    answer = client.get("/ui/?priority=" + quote("urgent\u202e") + "&lang=fr")
    assert answer.status_code == 422, answer.text
    assert translations("fr").gettext(REFUSED) in answer.text


def test_a_sign_in_with_a_hidden_character_in_the_username_is_refused_and_not_attempted(
    client: TestClient, env: Env
) -> None:
    client.cookies.clear()
    username = add_account(env)
    before = [e for e in _trail(env) if e["action"] == "ui:sign_in"]
    answer = sign_in(client, f"{username}\u202e")
    assert answer.status_code == 422, answer.text
    assert REFUSED in answer.text
    # Not an attempt on the account: nothing on the trail, no failure counted toward its lock.
    assert [e for e in _trail(env) if e["action"] == "ui:sign_in"] == before
    # A password holding such a character is its holder's choice: it is checked against its hash only.
    odd = f"dr.{uuid.uuid4().hex[:8]}"
    password = "correct \u202ehorse\u0085 battery\tstaple"
    record = Record(env.settings.record_url)
    try:
        add_user(record, username=odd, password=password, role="radiologist", facility="F1")
    finally:
        record.close()
    assert sign_in(client, odd, password).status_code == 303
