"""A read of patient data is authorised, done and audited in one transaction, as a security officer checks
it on a real PostgreSQL (``tests/_postgres.py``) through the real app.

The check (facility, the patient's consent to sharing, a break-the-glass grant), the read and the audit
entry were three transactions: a consent withdrawn between the check and the read let the result out after
the withdrawal, with an entry saying ``success`` chained after the withdrawal's own. Now the trail orders
every read wholly before or wholly after a consent change, and what it says is what was served.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _postgres import new_postgres_database
from _security_env import Env, TestClient, seeded_env, upload
from sqlalchemy import Engine, create_engine, event, text

from inference.api import create_app
from inference.record import Record

_SHARE = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
_WITHDRAW = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "deny"}
_LIVENESS_S = 60.0  # a bound on waiting for the other transaction, never an assertion on time


@dataclass(frozen=True)
class Served:
    client: TestClient
    env: Env
    app: Any
    url: str


@pytest.fixture(scope="module")
def served(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = new_postgres_database(postgres_server)
    env = seeded_env(tmp_path_factory.mktemp("read-audit"), database_url=url)
    app = create_app(env.settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Served(client, env, app, url)


def _shared_result(s: Served) -> dict[str, Any]:
    """An imaging result filed by F1, whose patient consented to sharing between facilities."""
    # A bright blob: the result has positive findings, so heatmaps to draw.
    patient = f"IPP-RA-{uuid.uuid4().hex[:8]}"
    posted = upload(s.client, s.env.headers("pacs", facility="F1"), patient_id=patient, blob=True)
    assert posted.status_code == 201, posted.text
    result: dict[str, Any] = posted.json()
    consent = s.client.put(
        f"/v1/patients/{result['patient']['id']}/consent",
        json=_SHARE,
        headers=s.env.headers("clinician", facility="F1"),
    )
    assert consent.status_code == 200, consent.text
    return result


def _trail(s: Served, patient_id: str) -> list[dict[str, Any]]:
    record = Record(s.url)
    try:
        _total, entries = record.audit.search(patient_id=patient_id, limit=100)
    finally:
        record.close()
    return sorted(entries, key=lambda e: int(e["seq"]))


def _lock_waiters(engine: Engine) -> Callable[[], int]:
    """How many sessions of the test database wait on a lock (the withdrawal, held behind the read)."""

    def count() -> int:
        with engine.connect() as connection:
            found = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return int(found or 0)

    return count


def _heatmap(result: dict[str, Any]) -> str:
    return str(next(f for f in result["findings"] if f["positive"])["heatmap"])


# What F2 reads, the statement that reads its data once the access is checked, and the read's entry.
_READS = {
    "result": (lambda r: f"/v1/results/{r['result_id']}", "FROM findings", "Result"),
    "heatmap": (_heatmap, "FROM renderings", "Heatmap"),
    "image": (lambda r: f"/v1/results/{r['result_id']}/image.png", "FROM renderings", "Image"),
    "fhir-report": (
        lambda r: f"/fhir/DiagnosticReport/{r['result_id']}",
        "FROM findings",
        "DiagnosticReport",
    ),
    # The consent was read before its check: the withdrawal comes just before the entry is chained.
    "consent": (
        lambda r: f"/v1/patients/{r['patient']['id']}/consent",
        "FROM audit_chain_head",
        "Consent",
    ),
}
_ACTIONS = {"fhir-report": "fhir:read", "consent": "consent:read"}  # the others: results:read


def _read_while_withdrawn(s: Served, patient_id: str, data_statement: str, read: Callable[[], Any]) -> Any:
    """``read()``, during which F1 withdraws the patient's consent to sharing at the moment the read, its
    access already checked, runs ``data_statement``: the database is not mocked, the withdrawal is a real
    request beside the read."""
    withdrawn: dict[str, Any] = {}
    watching = create_engine(s.url)
    waiters = _lock_waiters(watching)

    def withdraw() -> None:
        withdrawn["response"] = s.client.put(
            f"/v1/patients/{patient_id}/consent",
            json=_WITHDRAW,
            headers=s.env.headers("clinician", facility="F1"),
        )

    worker = threading.Thread(target=withdraw)
    fired = threading.Event()

    def between_check_and_read(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fired.is_set() or data_statement not in statement:
            return
        fired.set()
        worker.start()
        # Go on once the withdrawal has committed, or once it waits on a lock the read holds.
        worker.join(timeout=0.05)
        deadline = threading.Event()
        timer = threading.Timer(_LIVENESS_S, deadline.set)
        timer.start()
        try:
            while worker.is_alive() and waiters() == 0 and not deadline.is_set():
                worker.join(timeout=0.05)
        finally:
            timer.cancel()

    engine = s.app.state.ctx.record.engine
    event.listen(engine, "before_cursor_execute", between_check_and_read)
    try:
        answer = read()
    finally:
        event.remove(engine, "before_cursor_execute", between_check_and_read)
        watching.dispose()
    assert fired.is_set()
    worker.join(timeout=_LIVENESS_S)
    assert not worker.is_alive()
    assert withdrawn["response"].status_code == 200, withdrawn["response"].text
    return answer


@pytest.mark.parametrize("what", sorted(_READS))
def test_a_consent_withdrawn_while_a_result_is_read_never_lets_it_out_after_the_withdrawal(
    served: Served, what: str
) -> None:
    s = served
    path_of, data_statement, resource_type = _READS[what]
    result = _shared_result(s)
    patient_id, path = result["patient"]["id"], path_of(result)
    reader = f"dr-f2-{uuid.uuid4().hex[:6]}"
    f2 = s.env.headers("radiologist", facility="F2", subject=reader)
    # Sharing opens the result to F2 (the picture is not drawn yet: this reads the result alone).
    assert s.client.get(f"/v1/results/{result['result_id']}", headers=f2).status_code == 200

    read = _read_while_withdrawn(s, patient_id, data_statement, lambda: s.client.get(path, headers=f2))
    trail = _trail(s, patient_id)
    withdrawal = [e for e in trail if e["action"] == "consent:write"][-1]
    reads = [e for e in trail if e["subject"] == reader and e["resource_type"] == resource_type]
    last = reads[-1]
    if read.status_code == 200:
        # Served: on the trail, the read happened while the patient still shared their results.
        assert read.content and last["action"] == _ACTIONS.get(what, "results:read")
        assert last["outcome"] == "success"
        assert last["seq"] < withdrawal["seq"], (last, withdrawal)
    else:
        # Refused: the check saw the withdrawal, and the trail says so.
        assert read.status_code == 404, read.text  # answered as an unknown result
        assert last["outcome"] == "denied" and last["seq"] > withdrawal["seq"]
    # Either way, once withdrawn, F2 reads nothing more.
    assert s.client.get(path, headers=f2).status_code == 404
    assert _trail(s, patient_id)[-1]["outcome"] == "denied"


@pytest.mark.parametrize("what", sorted(_READS))
def test_a_read_whose_audit_entry_is_refused_serves_nothing_and_writes_nothing(
    served: Served, what: str
) -> None:
    s = served
    path_of, _statement, _type = _READS[what]
    result = _shared_result(s)
    patient_id, result_id = result["patient"]["id"], result["result_id"]
    blocked = f"dr-blocked-{uuid.uuid4().hex[:6]}"
    engine = create_engine(s.url)
    # The database refuses this reader's audit entries (as a full disk or a broken chain would).
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse_entry() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{blocked}' THEN RAISE EXCEPTION 'audit refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_entry BEFORE INSERT ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_entry()"
            )
        )
    try:
        before = _trail(s, patient_id)
        read = s.client.get(
            path_of(result), headers=s.env.headers("radiologist", facility="F2", subject=blocked)
        )
        assert read.status_code == 503, read.text
        assert read.headers["content-type"].split(";")[0] in ("application/json", "application/fhir+json")
        assert result_id not in read.text and patient_id not in read.text
        assert _trail(s, patient_id) == before
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER refuse_entry ON audit_events"))
            connection.execute(text("DROP FUNCTION refuse_entry()"))
        engine.dispose()
    record = Record(s.url)
    try:
        assert record.audit.verify().ok
    finally:
        record.close()


def test_a_consent_withdrawn_while_a_fhir_search_runs_never_lets_its_page_out_after_the_withdrawal(
    served: Served,
) -> None:
    # A search's page and the entries naming whom it disclosed were two transactions or more: the page
    # was read under the consent, then the entries chained after its withdrawal.
    s = served
    result = _shared_result(s)
    patient_id = result["patient"]["id"]
    reader = f"dr-f2-{uuid.uuid4().hex[:6]}"
    f2 = s.env.headers("radiologist", facility="F2", subject=reader)
    path = f"/fhir/DiagnosticReport?patient={patient_id}"
    page = _read_while_withdrawn(s, patient_id, "FROM findings", lambda: s.client.get(path, headers=f2))
    assert page.status_code == 200, page.text
    trail = _trail(s, patient_id)
    withdrawal = [e for e in trail if e["action"] == "consent:write"][-1]
    search = [e for e in trail if e["subject"] == reader and e["resource_type"] == "DiagnosticReport"][-1]
    if page.json()["total"] > 0:
        # Served: on the trail, the search ran while the patient still shared their results.
        assert search["outcome"] == "success" and search["seq"] < withdrawal["seq"], (search, withdrawal)
    else:
        assert search["seq"] > withdrawal["seq"]
    # Once withdrawn, F2's search finds nothing of F1's.
    assert s.client.get(path, headers=f2).json()["total"] == 0
