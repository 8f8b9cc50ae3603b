"""The worklist's filter form as a reader uses it: one filter chosen, the other left at "All" (the form
then sends it empty), and the list shows the chosen rows instead of an error page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from _ui_live import PASSWORD, Env, add_account, browser, live_server, send_study  # noqa: I001

from inference.api import create_app
from inference.api.ui._i18n import translations


@pytest.fixture(scope="module")
def site(env: Env) -> Iterator[str]:
    with live_server(create_app(env.settings)) as base:
        yield base


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_filtering_on_one_column_with_the_other_at_all_shows_the_chosen_rows(
    site: str, env: Env, lang: str
) -> None:
    _ = translations(lang).gettext
    facility = f"F-{uuid.uuid4().hex[:6]}"  # its worklist holds these studies only
    critical = send_study(site, env, critical=True, facility=facility)
    routine = send_study(site, env, critical=False, facility=facility)
    username = add_account(env, facility=facility)
    with browser() as chromium:
        context = chromium.new_context(locale=lang)
        page = context.new_page()
        page.goto(f"{site}/ui/")
        page.get_by_label(_("Username")).fill(username)
        page.get_by_label(_("Password")).fill(PASSWORD)
        page.get_by_role("button", name=_("Sign in")).click()
        page.wait_for_url(f"{site}/ui/")

        page.get_by_label(_("Priority"), exact=True).select_option("critical")
        assert page.get_by_label(_("AI status"), exact=True).input_value() == ""  # "All"
        with page.expect_navigation():
            page.get_by_role("button", name=_("Filter")).click()
        assert page.title().startswith(_("Worklist")), page.title()
        rows = page.get_by_role("table").get_by_role("row").all_inner_texts()
        assert any(critical["patient"]["identifier"] in row for row in rows), rows
        assert not any(routine["patient"]["identifier"] in row for row in rows), rows
        assert page.get_by_label(_("Priority"), exact=True).input_value() == "critical"

        # Back to "All" in both: every row again.
        page.get_by_label(_("Priority"), exact=True).select_option("")
        with page.expect_navigation():
            page.get_by_role("button", name=_("Filter")).click()
        rows = page.get_by_role("table").get_by_role("row").all_inner_texts()
        assert all(any(s["patient"]["identifier"] in row for row in rows) for s in (critical, routine)), rows
        context.close()
