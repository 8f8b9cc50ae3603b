"""A reader's verdict and the closing of a result are checked, written and audited in one transaction, as a
security officer checks it on a real PostgreSQL (``tests/_postgres.py``) through the real pages.

The check (does the reader's facility own the result), the refusal's entry, the check of whether a refused
reader may read the result (told why, or answered as for an unknown result) and the change with its entry
were up to four transactions: a consent withdrawn between them was seen by one and not the other (a refusal
answered as for an unknown result, with an entry chained before the withdrawal that made it so).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _pages_audit import Served, Transactions, serve, signed_in, watching
from _security_env import TestClient, upload
from sqlalchemy import Engine, create_engine, event, text

from inference.record import Record

_SHARE = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
_WITHDRAW = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "deny"}
_LIVENESS_S = 60.0  # a bound on waiting for the other transaction, never an assertion on time


@pytest.fixture(scope="module")
def served(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(postgres_server, tmp_path_factory, "write-audit")


@dataclass
class _Reader:
    browser: TestClient
    subject: str
    csrf: str
    headers: dict[str, str] = field(default_factory=dict)


def _api_reader(s: Served, facility: str) -> _Reader:
    """A radiologist of ``facility`` with a bearer token (``POST /v1/results/{id}/feedback``)."""
    subject = f"dr-api-{uuid.uuid4().hex[:8]}"
    return _Reader(s.client, subject, "", s.env.headers("radiologist", facility=facility, subject=subject))


def _reader(s: Served, facility: str, result_id: str) -> _Reader:
    """A radiologist of ``facility`` signed in to the pages (a browser of its own), having opened the
    viewer of ``result_id`` (its form's CSRF token)."""
    browser, subject = signed_in(s, facility)
    page = browser.get(f"/ui/results/{result_id}")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return _Reader(browser, subject, csrf.group(1))


def _result(s: Served, facility: str, *, shared: bool = False) -> dict[str, Any]:
    posted = upload(
        s.client, s.env.headers("pacs", facility=facility), patient_id=f"IPP-WA-{uuid.uuid4().hex[:8]}"
    )
    assert posted.status_code == 201, posted.text
    result: dict[str, Any] = posted.json()
    if shared:
        consent = s.client.put(
            f"/v1/patients/{result['patient']['id']}/consent",
            json=_SHARE,
            headers=s.env.headers("clinician", facility=facility),
        )
        assert consent.status_code == 200, consent.text
    return result


def _change(reader: _Reader, result: dict[str, Any], what: str) -> Any:
    """The viewer's form: a verdict on the first finding (the result stays open), or "Mark as read"; or
    (``api``) the API's feedback, a verdict that closes the result."""
    if what == "api":
        body = {"verdicts": [{"code": result["findings"][0]["code"], "verdict": "agree"}]}
        return reader.browser.post(
            f"/v1/results/{result['result_id']}/feedback", json=body, headers=reader.headers
        )
    data = {"csrf_token": reader.csrf}
    if what == "verdict":
        data |= {"code": result["findings"][0]["code"], "verdict": "agree"}
        return reader.browser.post(
            f"/ui/results/{result['result_id']}/feedback", data=data, follow_redirects=False
        )
    return reader.browser.post(f"/ui/results/{result['result_id']}/read", data=data, follow_redirects=False)


def _watched(s: Served, act: Callable[[], Any]) -> tuple[Any, Transactions]:
    with watching(s.app.state.ctx.record.engine) as seen:
        answer = act()
    return answer, seen


def _trail(s: Served, patient_id: str) -> list[dict[str, Any]]:
    record = Record(s.url)
    try:
        _total, entries = record.audit.search(patient_id=patient_id, limit=200)
    finally:
        record.close()
    return sorted(entries, key=lambda e: int(e["seq"]))


def _stored(s: Served, result_id: str) -> tuple[int, str]:
    """How many feedback rows the result has, and its status, as the database holds them."""
    engine = create_engine(s.url)
    try:
        with engine.connect() as connection:
            rows = connection.scalar(
                text("SELECT count(*) FROM feedback WHERE result_id = :r"), {"r": result_id}
            )
            status = connection.scalar(text("SELECT status FROM results WHERE id = :r"), {"r": result_id})
    finally:
        engine.dispose()
    return int(rows or 0), str(status)


@pytest.mark.parametrize("what", ["verdict", "read", "api"])
def test_a_change_of_the_readers_own_result_is_checked_made_and_audited_in_one_transaction(
    served: Served, what: str
) -> None:
    s = served
    facility = f"F-{uuid.uuid4().hex[:6]}"
    result = _result(s, facility)
    result_id, patient_id = result["result_id"], result["patient"]["id"]
    reader = _api_reader(s, facility) if what == "api" else _reader(s, facility, result_id)
    before = _stored(s, result_id)

    # The database refuses this reader's entries (as a full disk or a broken chain would): nothing changes.
    admin = create_engine(s.url)
    trigger = f"refuse_{uuid.uuid4().hex[:8]}"
    with admin.begin() as connection:
        connection.execute(
            text(
                f"CREATE FUNCTION {trigger}() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{reader.subject}' THEN "
                "RAISE EXCEPTION 'audit refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON audit_events "
                f"FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            )
        )
    try:
        assert _change(reader, result, what).status_code == 503
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON audit_events"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
        admin.dispose()
    assert _stored(s, result_id) == before
    assert not [
        e for e in _trail(s, patient_id) if e["subject"] == reader.subject and e["action"] == "feedback:write"
    ]

    answer, seen = _watched(s, lambda: _change(reader, result, what))
    assert answer.status_code == (201 if what == "api" else 303), answer.text
    # The result's owner was checked in the one transaction that made the change and wrote its entry.
    checked = seen.of(statement="FROM results", naming=result_id)
    audited = seen.of(statement="INSERT INTO audit_events", naming=reader.subject)
    changed = seen.of(statement="INSERT INTO feedback" if what != "read" else "UPDATE results")
    assert len(audited) == 1, seen.statements
    assert checked == audited == changed, (checked, audited, changed)
    rows, status = _stored(s, result_id)
    expected = {
        "verdict": (before[0] + 1, before[1]),
        "read": (before[0], "reviewed"),
        "api": (before[0] + 1, "reviewed"),
    }
    assert (rows, status) == expected[what]
    entry = [e for e in _trail(s, patient_id) if e["subject"] == reader.subject][-1]
    assert (entry["action"], entry["resource_id"], entry["outcome"]) == (
        "feedback:write",
        result_id,
        "read" if what == "read" else "success",
    )
    record = Record(s.url)
    try:
        assert record.audit.verify().ok
    finally:
        record.close()


@pytest.mark.parametrize("what", ["verdict", "read", "api"])
def test_a_refused_change_is_checked_and_audited_in_one_transaction(served: Served, what: str) -> None:
    # F2 reads F1's result under the patient's consent to sharing, which opens it for reading only.
    s = served
    result = _result(s, "F1", shared=True)
    result_id, patient_id = result["result_id"], result["patient"]["id"]
    reader = _api_reader(s, "F2") if what == "api" else _reader(s, "F2", result_id)
    before = _stored(s, result_id)
    answer, seen = _watched(s, lambda: _change(reader, result, what))
    assert answer.status_code == 403, answer.text
    assert _stored(s, result_id) == before
    # Whether F2 may be told why (it reads the result) was judged in the transaction of the refusal's entry.
    consulted = seen.of(statement="FROM consents")
    audited = seen.of(statement="INSERT INTO audit_events", naming=reader.subject)
    assert len(audited) == 1 and consulted == audited, (consulted, audited)
    entry = [e for e in _trail(s, patient_id) if e["subject"] == reader.subject][-1]
    assert (entry["action"], entry["resource_id"], entry["outcome"]) == (
        "feedback:write",
        result_id,
        "denied",
    )


def _lock_waiters(engine: Engine) -> int:
    with engine.connect() as connection:
        found = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(found or 0)


@pytest.mark.parametrize("what", ["verdict", "read"])
def test_a_consent_withdrawn_while_a_change_is_refused_is_wholly_before_or_after_the_refusal(
    served: Served, what: str
) -> None:
    s = served
    result = _result(s, "F1", shared=True)
    patient_id = result["patient"]["id"]
    reader = _reader(s, "F2", result["result_id"])
    withdrawn: dict[str, Any] = {}
    watching = create_engine(s.url)

    def withdraw() -> None:
        withdrawn["response"] = s.client.put(
            f"/v1/patients/{patient_id}/consent",
            json=_WITHDRAW,
            headers=s.env.headers("clinician", facility="F1"),
        )

    worker = threading.Thread(target=withdraw)
    fired = threading.Event()

    def at_the_refusals_entry(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        # F1 withdraws as the refusal's entry is written; the refusal goes on once the withdrawal has
        # committed, or once it waits on a lock the refusal holds.
        if (
            fired.is_set()
            or "INSERT INTO audit_events" not in statement
            or reader.subject not in repr(parameters)
        ):
            return
        fired.set()
        worker.start()
        worker.join(timeout=0.05)
        deadline = threading.Event()
        timer = threading.Timer(_LIVENESS_S, deadline.set)
        timer.start()
        try:
            while worker.is_alive() and _lock_waiters(watching) == 0 and not deadline.is_set():
                worker.join(timeout=0.05)
        finally:
            timer.cancel()

    engine = s.app.state.ctx.record.engine
    event.listen(engine, "before_cursor_execute", at_the_refusals_entry)
    try:
        answer = _change(reader, result, what)
    finally:
        event.remove(engine, "before_cursor_execute", at_the_refusals_entry)
    worker.join(timeout=_LIVENESS_S)
    watching.dispose()
    assert fired.is_set() and not worker.is_alive()
    assert withdrawn["response"].status_code == 200, withdrawn["response"].text
    trail = _trail(s, patient_id)
    withdrawal = [e for e in trail if e["action"] == "consent:write"][-1]
    refusal = [e for e in trail if e["subject"] == reader.subject and e["action"] == "feedback:write"][-1]
    assert refusal["outcome"] == "denied"
    if answer.status_code == 403:
        # Told why (it reads the result): on the trail, while the patient still shared it.
        assert refusal["seq"] < withdrawal["seq"], (refusal, withdrawal)
    else:
        # Answered as for an unknown result: the withdrawal came first, on the trail too.
        assert answer.status_code == 404, answer.text
        assert refusal["seq"] > withdrawal["seq"], (refusal, withdrawal)
    # Once withdrawn, F2 is answered as for an unknown result.
    assert _change(reader, result, what).status_code == 404
