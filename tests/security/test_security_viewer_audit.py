"""The viewer page reads a result and the reader's own verdicts on it in the one transaction that writes the
read's audit entry, as a security officer checks it on a real PostgreSQL (``tests/_postgres.py``) through
the real app.

The page read the result (audited), then the feedback given on it in a transaction of its own, with no
entry and no ground checked: the verdicts, a reader's judgement of a patient's findings, left the record
apart from the audited read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from _pages_audit import Served, serve, signed_in, watching
from _security_env import TestClient, upload

from inference.record import Record


@pytest.fixture(scope="module")
def served(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(postgres_server, tmp_path_factory, "viewer-audit")


def _give_verdict(browser: TestClient, result_id: str, code: str, verdict: str) -> None:
    page = browser.get(f"/ui/results/{result_id}")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    answer = browser.post(
        f"/ui/results/{result_id}/feedback",
        data={"csrf_token": csrf.group(1), "code": code, "verdict": verdict},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_the_viewer_reads_the_readers_verdicts_in_the_transaction_of_the_results_audit_entry(
    served: Served,
) -> None:
    s = served
    facility = f"F-{uuid.uuid4().hex[:6]}"
    posted = upload(
        s.client, s.env.headers("pacs", facility=facility), patient_id=f"IPP-VA-{uuid.uuid4().hex[:8]}"
    )
    assert posted.status_code == 201, posted.text
    result_id = posted.json()["result_id"]
    code = posted.json()["findings"][0]["code"]
    browser, subject = signed_in(s, facility)
    colleague, _ = signed_in(s, facility)
    _give_verdict(browser, result_id, code, "agree")
    _give_verdict(colleague, result_id, code, "disagree")

    with watching(s.app.state.ctx.record.engine) as seen:
        page = browser.get(f"/ui/results/{result_id}")
    assert page.status_code == 200, page.text
    # The reader sees its own verdict, not its colleague's.
    assert "Your verdict: agree" in page.text and "Your verdict: disagree" not in page.text
    # The feedback was read in the one transaction that read the result and wrote the page's entry.
    audited = seen.of(statement="INSERT INTO audit_events", naming=subject)
    assert len(audited) == 1, seen.statements
    assert seen.of(statement="FROM feedback") == audited, seen.statements
    assert seen.of(statement="FROM results", naming=result_id) == audited, seen.statements

    record = Record(s.url)
    try:
        _total, entries = record.audit.search(agent=subject, limit=500)
    finally:
        record.close()
    viewed = [e for e in entries if e["action"] == "results:read" and e["resource_id"] == result_id]
    # One entry per viewing: the page shown before the verdict, and this one.
    assert [e["outcome"] for e in viewed] == ["success", "success"]
