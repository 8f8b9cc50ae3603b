"""The worklist's filters choose among all the open results, not among the most urgent ones the page
would show without a filter: a reader filtering on "routine" behind a long queue of critical studies
finds the routine ones (the page itself says "use the filters to see others")."""

from __future__ import annotations

import re

import pytest
from _ui_live import Env, TestClient, add_account, send_study, sign_in  # noqa: I001

from inference.api.ui import _pages


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-href="/ui/results/([0-9a-f-]+)"', html)


def test_a_filter_finds_results_ranked_below_the_page_limit(
    client: TestClient, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    routine = send_study(client, env, critical=False)
    critical = [send_study(client, env, critical=True) for _ in range(3)]
    assert routine["priority"] == "routine" and all(c["priority"] == "critical" for c in critical)
    # The page shows the 200 most urgent; three stand for 200 here (filing 201 studies takes minutes).
    monkeypatch.setattr(_pages, "WORKLIST_LIMIT", 3)
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303

    unfiltered = client.get("/ui/").text
    assert _rows(unfiltered) == [c["result_id"] for c in critical]
    assert "Only the 3 most urgent open results are shown; use the filters to see others." in unfiltered

    for path in ("/ui/", "/ui/worklist/rows"):
        page = client.get(path, params={"priority": "routine"})
        assert page.status_code == 200
        assert _rows(page.text) == [routine["result_id"]], path
        assert "No open result." not in page.text
    assert _rows(client.get("/ui/", params={"status": "analysed", "priority": "routine"}).text) == [
        routine["result_id"]
    ]
