"""Switching the language of a filtered worklist keeps its filters: the reader sees the same list in the
other language, not every open result."""

from __future__ import annotations

import html
import re

from _ui_live import Env, TestClient, add_account, send_study, sign_in  # noqa: I001


def _language_link(page: str, code: str) -> str:
    found = re.search(rf'<a href="([^"]*)" hreflang="{code}"', page)
    assert found, f"no link to the {code} page"
    return html.unescape(found.group(1))


def test_switching_language_keeps_the_worklist_filters(client: TestClient, env: Env) -> None:
    routine = send_study(client, env, critical=False)
    critical = send_study(client, env, critical=True)
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    filtered = client.get("/ui/", params={"priority": "routine"}).text
    assert routine["result_id"] in filtered and critical["result_id"] not in filtered

    for code, title in (("fr", "Liste de travail"), ("ar", 'dir="rtl"')):
        page = client.get("/ui/" + _language_link(filtered, code)).text
        assert title in page
        assert routine["result_id"] in page
        assert critical["result_id"] not in page, f"the {code} page dropped the priority filter"
        assert '<option value="routine" selected>' in page


def test_a_language_link_carries_nothing_but_the_filters(client: TestClient, env: Env) -> None:
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    page = client.get("/ui/", params={"priority": "urgent", "status": "analysed", "x": '"><b>'}).text
    assert _language_link(page, "fr") == "?priority=urgent&status=analysed&lang=fr"
