"""A worklist left open refreshes its rows by itself, and with them the note that more open results wait
than are shown: the reader learns of the studies left off without reloading the page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from _ui_live import PASSWORD, Env, add_account, browser, live_server, send_study  # noqa: I001

from inference.api import create_app
from inference.api.ui import _pages

NOTE = "Only the 2 most urgent open results are shown; use the filters to see others."


@pytest.fixture(scope="module")
def site(env: Env) -> Iterator[str]:
    """The pages on loopback, in this process, with the worklist refreshing every 2 s."""
    ui = env.settings.ui.model_copy(update={"ui_refresh_seconds": 2})
    with live_server(create_app(env.settings.model_copy(update={"ui": ui}))) as base:
        yield base


def test_the_more_results_note_comes_with_the_refreshed_rows(
    site: str, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page shows the 200 most urgent; two stand for 200 here (filing 201 studies takes minutes).
    monkeypatch.setattr(_pages, "WORKLIST_LIMIT", 2)
    facility = f"F-{uuid.uuid4().hex[:6]}"  # its worklist holds these studies only
    shown = [send_study(site, env, critical=True, facility=facility) for _ in range(2)]
    username = add_account(env, facility=facility)
    with browser() as chromium:
        context = chromium.new_context(locale="en-GB")
        page = context.new_page()
        page.goto(f"{site}/ui/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{site}/ui/")
        assert page.get_by_text(NOTE).count() == 0  # both open results are on the page

        left_off = send_study(site, env, critical=False, facility=facility)
        page.get_by_text(NOTE).wait_for(timeout=20_000)  # came with a refresh, not a reload
        assert page.url == f"{site}/ui/"
        rows = page.get_by_role("table").get_by_role("row").all_inner_texts()
        assert all(any(s["patient"]["identifier"] in row for row in rows) for s in shown), rows
        assert not any(left_off["patient"]["identifier"] in row for row in rows), rows
        context.close()
