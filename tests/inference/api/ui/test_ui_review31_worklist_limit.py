"""The worklist's "only the N most urgent are shown" note appears when more open results exist than the
page shows, not when there are exactly as many; the worklist read is audited for the rows shown only."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from _ui_live import Env, TestClient, add_account, send_study, sign_in  # noqa: I001

from inference.api.ui import _pages
from inference.record import Record

NOTE = "Only the 3 most urgent open results are shown; use the filters to see others."


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-href="/ui/results/([0-9a-f-]+)"', html)


def test_the_limit_note_shows_only_when_more_results_wait_than_are_shown(
    client: TestClient, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page shows the 200 most urgent; three stand for 200 here (filing 201 studies takes minutes).
    monkeypatch.setattr(_pages, "WORKLIST_LIMIT", 3)
    facility = f"F-{uuid.uuid4().hex[:6]}"  # a facility of its own: its worklist holds these studies only
    critical = [send_study(client, env, critical=True, facility=facility) for _ in range(3)]
    client.cookies.clear()
    reader = add_account(env, facility=facility)
    assert sign_in(client, reader).status_code == 303

    exactly = client.get("/ui/").text
    assert sorted(_rows(exactly)) == sorted(c["result_id"] for c in critical)
    assert NOTE not in exactly  # all three are on the page: nothing is left out

    routine = send_study(client, env, critical=False, facility=facility)
    since = datetime.now(UTC)
    more = client.get("/ui/").text
    assert sorted(_rows(more)) == sorted(c["result_id"] for c in critical)
    assert NOTE in more

    # The audit trail names the patients the page listed, not the one it left out.
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=f"web:{reader}", since=since, limit=500)
    finally:
        record.close()
    listed = {e["patient_id"] for e in events if e["action"] == "worklist:read"}
    assert listed == {c["patient"]["id"] for c in critical}
    assert routine["patient"]["id"] not in listed
