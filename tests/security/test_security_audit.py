"""The audit trail as operators and auditors meet it: verify, tampering, FHIR AuditEvent, failing writes."""

from __future__ import annotations

import io
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _security_env import Env, TestClient, seeded_env, upload
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from inference._cli_commands import audit_verify
from inference.api import create_app
from inference.record import Record
from inference.services import add_user
from inference.services._audit_trail import SYSTEM_SUBJECT

PASSWORD = "correct horse battery staple"


def _flow(client: TestClient, env: Env) -> tuple[str, str]:
    posted = upload(client, env.headers("pacs", facility="F1"))
    assert posted.status_code == 201, posted.text
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    assert client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist")).status_code == 200
    denied = client.get(
        f"/v1/results/{result_id}", headers=env.headers("pacs", facility="F2", subject="pacs-f2")
    )
    assert denied.status_code == 404
    return result_id, patient_id


def test_auditors_search_the_trail_as_fhir_audit_events(client: TestClient, env: Env) -> None:
    first_day = datetime.now(UTC).date()  # before the first entry: a run across midnight UTC spans two days
    _result_id, patient_id = _flow(client, env)
    auditor = env.headers("auditor", subject="auditor-1")
    found = client.get("/fhir/AuditEvent", params={"patient": patient_id}, headers=auditor)
    assert found.status_code == 200 and found.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(found.json())
    assert bundle.type == "searchset" and bundle.total == len(bundle.entry) >= 3
    events = [e.resource for e in bundle.entry]
    summary = {(e.subtype[0].code, e.agent[0].role[0].coding[0].code, e.outcomeDesc) for e in events}
    assert ("studies:submit", "pacs", "success") in summary
    assert ("results:read", "radiologist", "success") in summary
    assert ("results:read", "pacs", "denied") in summary
    denial = next(e for e in events if e.outcomeDesc == "denied")
    assert denial.outcome == "4" and denial.agent[0].location.display == "F2"
    assert denial.agent[0].who.identifier.value == "pacs-f2" and denial.agent[0].network.address
    assert any(ent.what.reference == f"Patient/{patient_id}" for ent in denial.entity)

    by_agent = Bundle.model_validate(
        client.get("/fhir/AuditEvent", params={"agent": "pacs-f2"}, headers=auditor).json()
    )
    assert by_agent.total >= 1 and all(
        e.resource.agent[0].who.identifier.value == "pacs-f2" for e in by_agent.entry
    )
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    recent = client.get(
        "/fhir/AuditEvent",
        params=[("date", f"ge{first_day}"), ("date", f"lt{tomorrow}"), ("patient", patient_id)],
        headers=auditor,
    )
    # Two more than before: the auditor's first search about this patient and the search by agent (whose
    # page disclosed entries about this patient) are in the trail too, one entry per patient disclosed.
    assert Bundle.model_validate(recent.json()).total == bundle.total + 2
    before = first_day - timedelta(days=1)
    old = client.get("/fhir/AuditEvent", params={"date": f"lt{before}"}, headers=auditor)
    assert Bundle.model_validate(old.json()).total == 0
    one = client.get(f"/fhir/AuditEvent/{events[0].id}", headers=auditor)
    assert AuditEvent.model_validate(one.json()).id == events[0].id
    assert client.get("/fhir/AuditEvent/123456789", headers=auditor).status_code == 404
    bad = client.get("/fhir/AuditEvent", params={"date": "yesterday"}, headers=auditor)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    # Readers of patient data do not read the trail; auditors read nothing else.
    assert client.get("/fhir/AuditEvent", headers=env.headers("radiologist")).status_code == 403
    assert client.get(f"/fhir/Patient/{patient_id}", headers=auditor).status_code == 403
    # The auditor's own searches are in the trail.
    record = Record(env.settings.record_url)
    try:
        _total, mine = record.audit.search(agent="auditor-1")
        assert {e["action"] for e in mine} == {"audit:read", "fhir:read"}
        _total, models = record.audit.search(agent=SYSTEM_SUBJECT)
        assert {e["action"] for e in models} == {"model:change"} and len(models) >= 2
    finally:
        record.close()


def test_verify_passes_then_fails_after_one_byte_of_an_entry_changes(tmp_path: Path) -> None:
    env = seeded_env(tmp_path)
    with TestClient(create_app(env.settings)) as client:
        _flow(client, env)
    out = io.StringIO()
    assert audit_verify(env.settings, stream=out) == 0
    assert out.getvalue().startswith("audit trail intact:")
    database = sqlite3.connect(env.home / "record.db")
    try:
        seq, subject = database.execute(
            "SELECT seq, subject FROM audit_events WHERE outcome = 'denied' ORDER BY seq LIMIT 1"
        ).fetchone()
        database.execute("DROP TRIGGER audit_events_no_update")
        # One byte: 'pacs-f2' becomes 'pacs-f3'.
        database.execute("UPDATE audit_events SET subject = ? WHERE seq = ?", (subject[:-1] + "3", seq))
        database.commit()
    finally:
        database.close()
    out = io.StringIO()
    assert audit_verify(env.settings, stream=out) == 1
    report = out.getvalue()
    assert report.startswith("audit trail BROKEN") and f"entry seq {seq} " in report and "changed" in report


def test_a_failing_audit_write_fails_the_request(tmp_path: Path) -> None:
    env = seeded_env(tmp_path)
    with TestClient(create_app(env.settings)) as client:
        result_id, _patient_id = _flow(client, env)
        database = sqlite3.connect(env.home / "record.db")
        try:
            database.execute(
                "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
            database.commit()
        finally:
            database.close()
        response = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist"))
        assert response.status_code == 503 and response.json()["error"]["code"] == "record_unavailable"
        assert result_id not in response.text and "findings" not in response.text


def test_entries_name_the_request_that_made_them_and_the_hash_covers_it(tmp_path: Path) -> None:
    env = seeded_env(tmp_path)
    with TestClient(create_app(env.settings)) as client:
        posted = upload(client, {**env.headers("pacs", facility="F1"), "X-Request-ID": "pacs-req-0042"})
        assert posted.status_code == 201
        submitted = posted.headers["x-request-id"]
        result_id = posted.json()["result_id"]
        read = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist"))
        generated = read.headers["x-request-id"]
        auditor = env.headers("auditor")
        bundle = Bundle.model_validate(
            client.get("/fhir/AuditEvent", params={"agent": "test-pacs"}, headers=auditor).json()
        )
    record = Record(env.settings.record_url)
    try:
        _total, entries = record.audit.search(agent="test-pacs")
        _total, reads = record.audit.search(agent="test-radiologist")
        _total, system = record.audit.search(agent=SYSTEM_SUBJECT)
    finally:
        record.close()
    assert {e["request_id"] for e in entries if e["action"] == "studies:submit"} == {submitted}
    assert {e["request_id"] for e in reads if e["resource_id"] == result_id} == {generated}
    # Model changes at start belong to no request.
    assert system and all(e["request_id"] is None for e in system)
    details = {
        d.valueString
        for e in bundle.entry
        for ent in e.resource.entity or []
        for d in ent.detail or []
        if d.type == "request-id"
    }
    assert submitted in details
    assert audit_verify(env.settings, stream=io.StringIO()) == 0
    database = sqlite3.connect(env.home / "record.db")
    try:
        database.execute("DROP TRIGGER audit_events_no_update")
        database.execute(
            "UPDATE audit_events SET request_id = 'pacs-req-0043' WHERE request_id = ?", (submitted,)
        )
        database.commit()
    finally:
        database.close()
    out = io.StringIO()
    assert audit_verify(env.settings, stream=out) == 1 and "changed" in out.getvalue()


def _refuse_audit_of(env: Env, subject: str) -> None:
    """From now on, every audit entry of a change made by ``subject`` fails to be written."""
    database = sqlite3.connect(env.home / "record.db")
    try:
        database.execute(
            "CREATE TRIGGER audit_of_changes_broken BEFORE INSERT ON audit_events "
            f"WHEN NEW.subject = '{subject}' AND NEW.action IN ('feedback:write', 'consent:write') "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        database.commit()
    finally:
        database.close()


def _count(env: Env, sql: str, *values: str) -> int:
    database = sqlite3.connect(env.home / "record.db")
    try:
        return int(database.execute(sql, values).fetchone()[0])
    finally:
        database.close()


def test_a_change_whose_audit_entry_cannot_be_written_does_not_happen(tmp_path: Path) -> None:
    env = seeded_env(tmp_path)
    with TestClient(create_app(env.settings)) as client:
        posted = upload(client, env.headers("pacs", facility="F1"), patient_id="IPP-UNAUDITED")
        assert posted.status_code == 201
        result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
        kept = "SELECT count(*) FROM training_inputs WHERE patient_id = ?"
        assert _count(env, kept, patient_id) == 1
        radiologist = env.headers("radiologist", facility="F1", subject="dr-unaudited")
        clinician = env.headers("clinician", facility="F1", subject="dr-unaudited")
        _refuse_audit_of(env, "dr-unaudited")

        verdicts = {"verdicts": [{"code": posted.json()["findings"][0]["code"], "verdict": "disagree"}]}
        feedback = client.post(f"/v1/results/{result_id}/feedback", json=verdicts, headers=radiologist)
        objection = {"ai_processing": "deny", "national_sharing": "deny", "facility_sharing": "permit"}
        consent = client.put(f"/v1/patients/{patient_id}/consent", json=objection, headers=clinician)
        early = {"patient": {"identifier": "IPP-NEVER-FILED"}, **objection}
        new_patient = client.post("/v1/consents", json=early, headers=clinician)
        for refused in (feedback, consent, new_patient):
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "record_unavailable"

        # Nothing changed: the result is open without feedback, the consent and the kept training input
        # are as they were, and the patient of the early objection was not filed.
        result = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist", facility="F1"))
        assert result.json()["status"] == "open"
        assert _count(env, "SELECT count(*) FROM feedback WHERE result_id = ?", result_id) == 0
        now = client.get(
            f"/v1/patients/{patient_id}/consent", headers=env.headers("clinician", facility="F1")
        )
        assert now.json() | {"updated_at": None} == {
            "patient_id": patient_id,
            "ai_processing": "permit",
            "national_sharing": "permit",
            "facility_sharing": "deny",
            "updated_by": None,
            "updated_at": None,
        }
        assert _count(env, kept, patient_id) == 1
        assert _count(env, "SELECT count(*) FROM patients WHERE identifier = ?", "IPP-NEVER-FILED") == 0
    assert audit_verify(env.settings, stream=io.StringIO()) == 0


def test_a_verdict_or_mark_as_read_on_the_pages_whose_audit_fails_does_not_happen(tmp_path: Path) -> None:
    env = seeded_env(tmp_path)
    with TestClient(create_app(env.settings)) as client:
        posted = upload(client, env.headers("pacs", facility="F1"))
        result_id, code = posted.json()["result_id"], posted.json()["findings"][0]["code"]
        record = Record(env.settings.record_url)
        try:
            add_user(record, username="dr.unaudited", password=PASSWORD, role="radiologist", facility="F1")
        finally:
            record.close()
        form = client.get("/ui/signin")
        token = _csrf(form.text)
        signed_in = client.post(
            "/ui/signin",
            data={
                "username": "dr.unaudited",
                "password": "correct horse battery staple",
                "csrf_token": token,
            },
            follow_redirects=False,
        )
        assert signed_in.status_code == 303
        token = _csrf(client.get(f"/ui/results/{result_id}").text)
        _refuse_audit_of(env, "web:dr.unaudited")
        verdict = client.post(
            f"/ui/results/{result_id}/feedback",
            data={"code": code, "verdict": "disagree", "csrf_token": token},
            follow_redirects=False,
        )
        read = client.post(
            f"/ui/results/{result_id}/read", data={"csrf_token": token}, follow_redirects=False
        )
        assert verdict.status_code == read.status_code == 503
        assert result_id in client.get("/ui/").text  # still on the worklist
        client.cookies.clear()
        result = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist", facility="F1"))
        assert result.json()["status"] == "open"
    assert _count(env, "SELECT count(*) FROM feedback WHERE result_id = ?", result_id) == 0
    assert audit_verify(env.settings, stream=io.StringIO()) == 0


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)
