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
from dataclasses import dataclass, field
from typing import Any

import pytest
from _postgres import new_postgres_database
from _security_env import Env, TestClient, seeded_env, upload
from sqlalchemy import event

from inference.api import create_app
from inference.record import Record
from inference.services import add_user

_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Served:
    client: TestClient
    env: Env
    app: Any
    url: str


@pytest.fixture(scope="module")
def served(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = new_postgres_database(postgres_server)
    env = seeded_env(tmp_path_factory.mktemp("viewer-audit"), database_url=url)
    app = create_app(env.settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Served(client, env, app, url)


def _reader(s: Served, facility: str) -> tuple[TestClient, str]:
    """A radiologist of ``facility`` signed in to the pages (a browser of its own); and its trail subject."""
    username = f"dr.{uuid.uuid4().hex[:8]}"
    record = Record(s.url)
    try:
        add_user(record, username=username, password=_PASSWORD, role="radiologist", facility=facility)
    finally:
        record.close()
    browser = TestClient(s.app, raise_server_exceptions=False)
    form = browser.get("/ui/signin").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    data = {"username": username, "password": _PASSWORD, "csrf_token": csrf.group(1)}
    assert browser.post("/ui/signin", data=data, follow_redirects=False).status_code == 303
    return browser, f"web:{username}"


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


@dataclass
class _Transactions:
    """The statements run on the app's engine, by the transaction they ran in."""

    begun: int = 0
    statements: list[tuple[int, str, str]] = field(default_factory=list)

    def of(self, *, statement: str, naming: str = "") -> set[int]:
        """The transactions that ran a statement holding ``statement`` with parameters naming ``naming``."""
        return {t for t, sql, params in self.statements if statement in sql and naming in params}


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
    browser, subject = _reader(s, facility)
    colleague, _ = _reader(s, facility)
    _give_verdict(browser, result_id, code, "agree")
    _give_verdict(colleague, result_id, code, "disagree")

    seen = _Transactions()

    def began(connection: Any) -> None:
        seen.begun += 1
        connection.info["transaction"] = seen.begun

    def executed(connection: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.statements.append((connection.info.get("transaction", 0), statement, repr(parameters)))

    engine = s.app.state.ctx.record.engine
    event.listen(engine, "begin", began)
    event.listen(engine, "before_cursor_execute", executed)
    try:
        page = browser.get(f"/ui/results/{result_id}")
    finally:
        event.remove(engine, "begin", began)
        event.remove(engine, "before_cursor_execute", executed)
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
