"""A result a colleague already marked as read says so in the viewer (a reader opening it from the
browser's history or a stale tab), instead of offering "Mark as read" as if it were still open."""

from __future__ import annotations

import pytest
from _ui_live import Env, TestClient, add_account, csrf_of, send_study, sign_in  # noqa: I001

from inference.api.ui._i18n import translations


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_viewer_of_a_result_already_read_says_so(client: TestClient, env: Env, lang: str) -> None:
    _ = translations(lang).gettext
    result = send_study(client, env, critical=True)
    rid = result["result_id"]
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    page = client.get(f"/ui/results/{rid}", params={"lang": lang}).text
    assert _("Mark as read") in page

    # A colleague reads it meanwhile, in another browser (the same app: its lifespan is already running).
    colleague = TestClient(client.app)
    assert sign_in(colleague, add_account(env)).status_code == 303
    token = csrf_of(colleague.get(f"/ui/results/{rid}").text)
    assert colleague.post(f"/ui/results/{rid}/read", data={"csrf_token": token}).status_code == 200

    page = client.get(f"/ui/results/{rid}", params={"lang": lang}).text
    assert _("Marked as read: this result is no longer on the worklist.") in page
    assert f'action="/ui/results/{rid}/read"' not in page
    assert rid not in client.get("/ui/").text
