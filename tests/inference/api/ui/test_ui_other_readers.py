"""The viewer shows the other readers' verdicts on each finding, beside the reader's own.

A second reader (double reading, a colleague's review, the morning's reading of a film read at night)
saw only their own verdict: a colleague's disagreement with the model, on the record, stayed invisible
until an export. Each other reader's newest verdict per finding is now listed under it, with when it was
given; the reader's own is not repeated there.
"""

from __future__ import annotations

import html

from _ui_live import Env, TestClient, add_account, csrf_of, send_study, sign_in  # noqa: I001


def _verdict(client: TestClient, result_id: str, code: str, verdict: str, **extra: str) -> None:
    page = client.get(f"/ui/results/{result_id}")
    answer = client.post(
        f"/ui/results/{result_id}/feedback",
        data={"csrf_token": csrf_of(page.text), "code": code, "verdict": verdict, **extra},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_a_reader_sees_each_colleagues_newest_verdict_and_not_their_own_twice(
    client: TestClient, env: Env
) -> None:
    result = send_study(client, env, critical=True)
    code = next(f["code"] for f in result["findings"] if f["positive"])
    first, second = add_account(env), add_account(env)
    client.cookies.clear()
    assert sign_in(client, first).status_code == 303
    _verdict(client, result["result_id"], code, "agree")
    _verdict(client, result["result_id"], code, "disagree", correct_label="absent")  # changed their mind

    client.cookies.clear()
    assert sign_in(client, second).status_code == 303
    page = html.unescape(client.get(f"/ui/results/{result['result_id']}").text)
    assert f"Verdict of {first}: disagree, " in page
    assert f"Verdict of {first}: agree" not in page  # the newest only
    assert "Your verdict" not in page
    french = html.unescape(client.get(f"/ui/results/{result['result_id']}", params={"lang": "fr"}).text)
    assert f"Avis de {first}\u00a0: pas d'accord, " in french

    _verdict(client, result["result_id"], code, "agree")
    # A reader through the API (a reporting system's token): "correct", with the label they set.
    answer = client.post(
        f"/v1/results/{result['result_id']}/feedback",
        json={"verdicts": [{"code": code, "verdict": "correct", "correct_label": False}]},
        headers=env.headers("radiologist"),
    )
    assert answer.status_code == 201, answer.text
    client.cookies.clear()
    assert sign_in(client, first).status_code == 303
    page = html.unescape(client.get(f"/ui/results/{result['result_id']}", params={"lang": "en"}).text)
    assert "Your verdict: disagree" in page and f"Verdict of {second}: agree, " in page
    assert f"Verdict of {first}" not in page
    assert ": correct (absent), " in page
