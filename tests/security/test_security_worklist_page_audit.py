"""The readers' worklist page reads its rows and writes their audit entries in one transaction, as a
security officer checks it on a real PostgreSQL (``tests/_postgres.py``) through the real app.

The page read the open results in batches (filtered in Python, at most 20 000 rows), then audited the items
listed in transactions of their own: a consent withdrawn, or an entry refused, between the two was not
handled as for every other read, and a filter looked no further than 20 000 results.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _pages_audit import Served, serve, signed_in, watching
from _security_env import upload
from sqlalchemy import create_engine, event, text

from inference.record import Record
from inference.record._models import Result

_LIVENESS_S = 60.0  # a bound on waiting for the other transaction, never an assertion on time


@pytest.fixture(scope="module")
def served(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # F1's identifiers are issued by CHU-NORD: another facility names F1's patients by that issuer.
    yield from serve(postgres_server, tmp_path_factory, "worklist-page", facility_issuers={"F1": "CHU-NORD"})


def _study(s: Served, facility: str, *, critical: bool) -> dict[str, Any]:
    posted = upload(
        s.client, s.env.headers("pacs", facility=facility), patient_id=f"IPP-WP-{uuid.uuid4().hex[:8]}",
        blob=critical,
    )  # fmt: skip
    assert posted.status_code == 201, posted.text
    result: dict[str, Any] = posted.json()
    assert result["priority"] == ("critical" if critical else "routine")
    return result


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-href="/ui/results/([0-9a-f-]+)"', html)


def _worklist_entries(s: Served, subject: str) -> list[dict[str, Any]]:
    record = Record(s.url)
    try:
        _total, entries = record.audit.search(agent=subject, limit=500)
    finally:
        record.close()
    return [e for e in entries if e["action"] == "worklist:read"]


def test_the_worklist_page_reads_its_rows_in_the_transaction_of_their_audit_entries(served: Served) -> None:
    s = served
    facility = f"F-{uuid.uuid4().hex[:6]}"
    filed = [_study(s, facility, critical=True), _study(s, facility, critical=False)]
    browser, subject = signed_in(s, facility)
    with watching(s.app.state.ctx.record.engine) as seen:
        for path, params in (("/ui/", {}), ("/ui/worklist/rows", {"priority": "routine"})):
            seen.statements.clear()
            page = browser.get(path, params=params)
            assert page.status_code == 200, page.text
            expected = [r["result_id"] for r in filed if not params or r["priority"] == "routine"]
            assert _rows(page.text) == expected
            # The open results were read in the one transaction that wrote the page's audit entries.
            listed = seen.of(statement="FROM results")
            audited = seen.of(statement="INSERT INTO audit_events", naming=subject)
            assert len(audited) == 1, (path, seen.statements)
            assert listed == audited, (path, listed, audited)
    patients = {e["patient_id"] for e in _worklist_entries(s, subject)}
    assert patients == {r["patient"]["id"] for r in filed}
    # So an entry refused takes the page with it: an error page, no row, nothing on the trail.
    before = _worklist_entries(s, subject)
    admin = create_engine(s.url)
    # The database refuses this reader's audit entries (as a full disk or a broken chain would).
    with admin.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse_page_entry() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{subject}' THEN RAISE EXCEPTION 'audit refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_page_entry BEFORE INSERT ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_page_entry()"
            )
        )
    try:
        for path in ("/ui/", "/ui/worklist/rows"):
            page = browser.get(path)
            assert page.status_code == 503, page.text
            for result in filed:
                assert result["result_id"] not in page.text
                assert result["patient"]["identifier"] not in page.text
            assert _rows(page.text) == []
        assert _worklist_entries(s, subject) == before
    finally:
        with admin.begin() as connection:
            connection.execute(text("DROP TRIGGER refuse_page_entry ON audit_events"))
            connection.execute(text("DROP FUNCTION refuse_page_entry()"))
        admin.dispose()
    record = Record(s.url)
    try:
        assert record.audit.verify().ok
    finally:
        record.close()
    # Once the trail takes entries again, the page lists the results, audited.
    assert _rows(browser.get("/ui/").text) == [r["result_id"] for r in filed]
    assert len(_worklist_entries(s, subject)) == len(before) + len(filed)


def test_a_filter_finds_its_results_behind_twenty_thousand_others(served: Served) -> None:
    # Filing 20 000 studies takes hours: one critical result copied 20 000 times in SQL stands for a long
    # queue of critical studies, ahead of one routine study filed through the API.
    s = served
    facility = f"F-{uuid.uuid4().hex[:6]}"
    critical = _study(s, facility, critical=True)
    routine = _study(s, facility, critical=False)
    columns = [c.name for c in Result.__table__.columns]
    unique = {"id": "gen_random_uuid()::text", "instance_key": "NULL"}
    engine = create_engine(s.url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"INSERT INTO results ({', '.join(columns)}) "
                    f"SELECT {', '.join(unique.get(c, c) for c in columns)} "
                    "FROM results, generate_series(1, 20000) WHERE id = :id"
                ),
                {"id": critical["result_id"]},
            )
    finally:
        engine.dispose()
    browser, subject = signed_in(s, facility)

    unfiltered = browser.get("/ui/").text
    assert len(_rows(unfiltered)) == 200 and routine["result_id"] not in _rows(unfiltered)
    assert "Only the 200 most urgent open results are shown; use the filters to see others." in unfiltered
    for params in ({"priority": "routine"}, {"priority": "routine", "status": "analysed"}):
        for path in ("/ui/", "/ui/worklist/rows"):
            page = browser.get(path, params=params)
            assert page.status_code == 200, page.text
            assert _rows(page.text) == [routine["result_id"]], (path, params)
    urgent = browser.get("/ui/", params={"priority": "urgent"}).text
    assert _rows(urgent) == [] and "No open result." in urgent
    # Each page's entries name the patients it listed (the page that listed nobody: an entry naming none).
    listed = {e["patient_id"] for e in _worklist_entries(s, subject)}
    assert listed == {critical["patient"]["id"], routine["patient"]["id"], None}


def _vitals(identifier: str, **patient: str) -> dict[str, Any]:
    return {"patient": {"identifier": identifier, **patient}, "respiratory_rate": 18, "spo2": 97}


def test_a_consent_withdrawn_while_the_worklist_page_is_read_is_on_the_trail_after_what_it_showed(
    served: Served,
) -> None:
    # F1 files its patient; F2 files a result of the same person under other demographics. Under the
    # patient's consent to sharing, F2's page shows the age F1 recorded, otherwise the one F2 sent. The
    # page read its rows, then wrote its entries in another transaction: a withdrawal committed between
    # the two came on the trail before the entry of a page that showed F1's record.
    s = served
    identifier = f"IPP-WC-{uuid.uuid4().hex[:8]}"
    f1 = s.env.headers("clinician", facility="F1")
    filed = s.client.post("/v1/vitals", json=_vitals(identifier, birth_date="1950-03-01"), headers=f1)
    assert filed.status_code == 201, filed.text
    patient_id = filed.json()["patient"]["id"]
    share = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
    assert s.client.put(f"/v1/patients/{patient_id}/consent", json=share, headers=f1).status_code == 200
    facility = f"F-{uuid.uuid4().hex[:6]}"
    theirs = s.client.post(
        "/v1/vitals",
        json=_vitals(identifier, issuer="CHU-NORD", birth_date="2001-05-01"),
        headers=s.env.headers("clinician", facility=facility),
    )
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["patient"]["id"] == patient_id
    browser, subject = signed_in(s, facility)
    recorded, sent = "76 y", "25 y"  # the ages of F1's record and of F2's result, today
    assert recorded in browser.get("/ui/").text

    withdrawn: dict[str, Any] = {}

    def withdraw() -> None:
        withdrawn["response"] = s.client.put(
            f"/v1/patients/{patient_id}/consent",
            json={**share, "facility_sharing": "deny"},
            headers=f1,
        )

    worker = threading.Thread(target=withdraw)
    watching = create_engine(s.url)

    def waiting_on_a_lock() -> int:
        with watching.connect() as connection:
            found = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return int(found or 0)

    def after_the_rows(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The page's rows are read: F1 withdraws now, and the page goes on once the withdrawal has
        # committed, or once it waits on a lock the page's read holds.
        if worker.ident is not None or "FROM results" not in statement or "ORDER BY CASE" not in statement:
            return
        worker.start()
        deadline = threading.Event()
        timer = threading.Timer(_LIVENESS_S, deadline.set)
        timer.start()
        try:
            worker.join(timeout=0.05)
            while worker.is_alive() and waiting_on_a_lock() == 0 and not deadline.is_set():
                worker.join(timeout=0.05)
        finally:
            timer.cancel()

    engine = s.app.state.ctx.record.engine
    event.listen(engine, "after_cursor_execute", after_the_rows)
    try:
        page = browser.get("/ui/")
    finally:
        event.remove(engine, "after_cursor_execute", after_the_rows)
    worker.join(timeout=_LIVENESS_S)
    watching.dispose()
    assert not worker.is_alive() and withdrawn["response"].status_code == 200, withdrawn
    assert page.status_code == 200, page.text

    record = Record(s.url)
    try:
        _total, trail = record.audit.search(patient_id=patient_id, limit=500)
    finally:
        record.close()
    withdrawal = max(int(e["seq"]) for e in trail if e["action"] == "consent:write")
    entry = max(int(e["seq"]) for e in trail if e["subject"] == subject and e["action"] == "worklist:read")
    if recorded in page.text:
        # The page showed F1's record: on the trail, it was read while the patient still shared it.
        assert entry < withdrawal, (entry, withdrawal)
    else:
        assert sent in page.text and entry > withdrawal
    # Once withdrawn, F2's page shows what F2 sent.
    after = browser.get("/ui/").text
    assert sent in after and recorded not in after
