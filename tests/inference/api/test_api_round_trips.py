"""An upload that files a result makes at most two database round trips on its request path.

A round trip here is one transaction with the record's database (a SQLAlchemy ``begin`` on its engine):
the consent check before any pixel reaches the model, then the one write that files the result with its
audit entry and pending output build and reads it back. What the outbox worker does afterwards (building
the SR and captures, sending them) is off the request path and is not counted: only database work done
on behalf of an HTTP request is (a context variable set around each request, which the threads the
request's database calls run in inherit).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from sqlalchemy import event

from inference.api import create_app

_IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)


@dataclass
class Counter:
    """Transactions and statements run on behalf of HTTP requests."""

    transactions: int = 0
    statements: int = 0

    def reset(self) -> None:
        self.transactions = 0
        self.statements = 0


def _marking(app: Any) -> Any:
    """``app`` with every HTTP request run with :data:`_IN_REQUEST` set (the lifespan is left alone)."""

    async def marked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        token = _IN_REQUEST.set(True)
        try:
            await app(scope, receive, send)
        finally:
            _IN_REQUEST.reset(token)

    return marked


@contextlib.contextmanager
def _counted_server(
    home: Path, destinations: list[dict[str, Any]]
) -> Iterator[tuple[Env, TestClient, Counter, Any]]:
    """A server whose requests' DB work is counted."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        mp.setenv("DXASSIST_DESTINATIONS", json.dumps(destinations))
        mp.setenv("DXASSIST_DELIVERY_BACKOFF_SECONDS", "600")  # nothing listens: objects stay queued
        settings = make_settings(home)
        tiny_models.seed_both(settings.model_cache, home / "build")
        env = Env(home=home, settings=settings)
        app = create_app(settings)
        counter = Counter()
        with TestClient(_marking(app)) as client:
            engine = app.state.ctx.record.engine

            def began(_connection: Any) -> None:
                if _IN_REQUEST.get():
                    counter.transactions += 1

            def executed(*_args: Any) -> None:
                if _IN_REQUEST.get():
                    counter.statements += 1

            event.listen(engine, "begin", began)
            event.listen(engine, "before_cursor_execute", executed)
            try:
                yield env, client, counter, app
            finally:
                event.remove(engine, "begin", began)
                event.remove(engine, "before_cursor_execute", executed)


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, Counter, Any]]:
    """A server with a PACS destination (so every new result owes outputs), its requests' DB work counted."""
    destination = {"name": "pacs", "kind": "dimse", "host": "127.0.0.1", "port": 9, "ae_title": "NOWHERE"}
    with _counted_server(tmp_path_factory.mktemp("dxassist-round-trips"), [destination]) as served:
        yield served


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, Counter, Any]]:
    """A server without destinations, its requests' DB work counted: nothing appends to the audit trail
    in the background (an output build or delivery chained meanwhile would make the request's commit
    check the anchored head, a round trip of its own)."""
    with _counted_server(tmp_path_factory.mktemp("dxassist-round-trips-reads"), []) as served:
        yield served


def _upload(client: TestClient, env: Env, blob: bytes) -> Any:
    return client.post(
        "/v1/studies",
        files=[("files", ("pa.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )


def test_an_upload_that_files_a_result_makes_two_round_trips(
    counted: tuple[Env, TestClient, Counter, Any],
) -> None:
    env, client, counter, app = counted
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    warm = new_study_uid()
    assert _upload(client, env, chest_dicom(study=warm, sop=f"{warm}.1", blob=True)).status_code == 201
    counter.reset()
    response = _upload(client, env, blob)
    assert response.status_code == 201, response.text
    assert counter.transactions == 2, (counter.transactions, counter.statements)
    # The answer already says what the result owes its destination; the request built none of it.
    assert [(d["kind"], d["state"], d["attempts"]) for d in response.json()["deliveries"]] == [
        ("outputs", "pending", 0)
    ]

    # A resend is answered from the record within the same budget.
    counter.reset()
    again = _upload(client, env, blob)
    assert again.status_code == 200, again.text
    assert again.json()["result_id"] == response.json()["result_id"]
    assert counter.transactions == 2

    # The outbox worker builds the SR and captures afterwards, outside any request.
    record = app.state.ctx.record
    deadline = time.monotonic() + 60
    while record.builds.for_result(result_id=response.json()["result_id"]) is not None:
        assert time.monotonic() < deadline, "the outbox worker did not build the outputs"
        time.sleep(0.05)
    kinds = [d.kind for d in record.outbox.deliveries(result_id=response.json()["result_id"])]
    assert kinds[0] == "sr" and set(kinds[1:]) <= {"sc"} and len(kinds) >= 2


def _vitals(client: TestClient, env: Env, patient: str, at: str, **changes: Any) -> Any:
    body = {
        "patient": {"identifier": patient},
        "observed_at": at,
        "respiratory_rate": 16,
        "spo2": 97,
        "on_oxygen": False,
        "systolic_bp": 120,
        "diastolic_bp": 75,
        "heart_rate": 70,
        "temperature": 37.0,
        "consciousness": "A",
        **changes,
    }
    return client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))


def test_vital_signs_that_file_a_result_make_two_round_trips(
    counted: tuple[Env, TestClient, Counter, Any],
) -> None:
    env, client, counter, _app = counted
    patient = f"IPP-RT-{new_study_uid()[-8:]}"
    assert _vitals(client, env, f"{patient}-warm", "2026-11-20T05:00:00Z").status_code == 201
    counter.reset()
    first = _vitals(client, env, patient, "2026-11-20T06:00:00Z", heart_rate=95)
    assert first.status_code == 201, first.text
    assert first.json()["trend"] is None  # the patient's first observation: nothing earlier to read
    assert counter.transactions == 2, (counter.transactions, counter.statements)

    # A later observation reads the consent and the earlier ones (its trend), then files: two in all.
    counter.reset()
    second = _vitals(client, env, patient, "2026-11-20T07:00:00Z", heart_rate=115, respiratory_rate=22)
    assert second.status_code == 201, second.text
    assert counter.transactions == 2, (counter.transactions, counter.statements)
    trend = second.json()["trend"]
    assert trend is not None and trend["observations"] == 2, trend  # the earlier one was read

    # The same observation again is answered from the record within the same budget.
    counter.reset()
    again = _vitals(client, env, patient, "2026-11-20T07:00:00Z", heart_rate=115, respiratory_rate=22)
    assert again.status_code == 200, again.text
    assert again.json()["result_id"] == second.json()["result_id"]
    assert counter.transactions == 2


def test_reading_a_result_is_one_round_trip_with_its_audit_entry(
    quiet: tuple[Env, TestClient, Counter, Any],
) -> None:
    # The access check, the read and the audit entry were four transactions (the result's owner, the
    # ground, the result, the entry): now one, and no more statements than before.
    env, client, counter, app = quiet
    study = new_study_uid()
    posted = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert posted.status_code == 201, posted.text
    result_id = posted.json()["result_id"]
    headers = env.headers("radiologist", facility="F1")
    assert client.get(f"/v1/results/{result_id}", headers=headers).status_code == 200
    entries = app.state.ctx.record.audit.count()
    counter.reset()
    read = client.get(f"/v1/results/{result_id}", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["result_id"] == result_id
    assert counter.transactions == 1, (counter.transactions, counter.statements)
    # The head locked, the result's owner, the result with its patient, findings, study and vital signs,
    # its deliveries and pending build, the entry and the head moved (13 before, in three transactions).
    assert counter.statements <= 11, counter.statements
    assert app.state.ctx.record.audit.count() == entries + 1


def test_a_picture_is_one_round_trip_with_its_audit_entry_drawn_or_kept(
    quiet: tuple[Env, TestClient, Counter, Any],
) -> None:
    # A heatmap's access check, its stored rendering and its audit entry were three transactions (two
    # once the picture was kept in memory): now one, drawn or kept.
    env, client, counter, app = quiet
    study = new_study_uid()
    posted = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert posted.status_code == 201, posted.text
    heatmap = next(f for f in posted.json()["findings"] if f["positive"])["heatmap"]
    headers = env.headers("radiologist", facility="F1")
    for _first_then_kept in range(2):
        entries = app.state.ctx.record.audit.count()
        counter.reset()
        drawn = client.get(heatmap, headers=headers)
        assert drawn.status_code == 200, drawn.text
        assert drawn.headers["content-type"] == "image/png" and drawn.content
        assert counter.transactions == 1, (counter.transactions, counter.statements)
        assert app.state.ctx.record.audit.count() == entries + 1


def test_a_worklist_is_one_round_trip_with_an_entry_per_patient_listed(
    quiet: tuple[Env, TestClient, Counter, Any],
) -> None:
    # The list, the patients under a grant, their grounds and the entries were three or four
    # transactions: now one, with one entry per patient listed.
    env, client, counter, app = quiet
    study = new_study_uid()
    assert _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True)).status_code == 201
    headers = env.headers("radiologist", facility="F1")
    entries = app.state.ctx.record.audit.count()
    counter.reset()
    listed = client.get("/v1/worklist?limit=500", headers=headers)
    assert listed.status_code == 200, listed.text
    patients = {item["patient"]["identifier"] for item in listed.json()["items"]}
    assert patients
    assert counter.transactions == 1, (counter.transactions, counter.statements)
    assert app.state.ctx.record.audit.count() == entries + len(patients)


def test_a_fhir_or_consent_read_is_one_round_trip_with_its_audit_entry(
    quiet: tuple[Env, TestClient, Counter, Any],
) -> None:
    # The resource's owner, the ground, the resource and the entry were three or four transactions.
    env, client, counter, app = quiet
    study = new_study_uid()
    posted = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert posted.status_code == 201, posted.text
    headers = env.headers("radiologist", facility="F1")
    for path in (
        f"/fhir/DiagnosticReport/{posted.json()['result_id']}",
        f"/fhir/Patient/{posted.json()['patient']['id']}",
        f"/v1/patients/{posted.json()['patient']['id']}/consent",  # the consent's read, likewise
    ):
        entries = app.state.ctx.record.audit.count()
        counter.reset()
        read = client.get(path, headers=headers)
        assert read.status_code == 200, read.text
        assert counter.transactions == 1, (path, counter.transactions, counter.statements)
        assert app.state.ctx.record.audit.count() == entries + 1


def test_an_auditor_s_read_of_the_trail_is_one_round_trip_with_its_own_entry(
    quiet: tuple[Env, TestClient, Counter, Any],
) -> None:
    # The page (or the entry, or the grants) and the auditor's own entries were two or three
    # transactions: now one.
    env, client, counter, app = quiet
    study = new_study_uid()
    posted = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert posted.status_code == 201, posted.text
    patient_id = posted.json()["patient"]["id"]
    auditor = env.headers("auditor", facility="F1")
    counter.reset()
    page = client.get(f"/fhir/AuditEvent?patient={patient_id}&_count=5", headers=auditor)
    assert page.status_code == 200, page.text
    assert counter.transactions == 1, (counter.transactions, counter.statements)
    seq = page.json()["entry"][0]["resource"]["id"]
    entries = app.state.ctx.record.audit.count()
    counter.reset()
    read = client.get(f"/fhir/AuditEvent/{seq}", headers=auditor)
    assert read.status_code == 200, read.text
    assert counter.transactions == 1, (counter.transactions, counter.statements)
    assert app.state.ctx.record.audit.count() == entries + 1
    # The break-the-glass grants, likewise (one entry without a patient when none is listed).
    counter.reset()
    grants = client.get("/v1/break-glass", headers=auditor)
    assert grants.status_code == 200, grants.text
    assert counter.transactions == 1, (counter.transactions, counter.statements)
    assert app.state.ctx.record.audit.count() == entries + 2


def test_a_fhir_search_is_one_round_trip_with_its_entries(
    quiet: tuple[Env, TestClient, Counter, Any],
) -> None:
    # The page, the patients under a grant, their rows' owners and the entries were three or more
    # transactions: now one, with one entry per patient the page discloses.
    env, client, counter, app = quiet
    study = new_study_uid()
    posted = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert posted.status_code == 201, posted.text
    patient_id = posted.json()["patient"]["id"]
    headers = env.headers("radiologist", facility="F1")
    for query in (
        f"DiagnosticReport?patient={patient_id}",
        f"Observation?patient={patient_id}&_count=0",
        f"Patient/{patient_id}/$everything?_type=DiagnosticReport",  # one entry per type it discloses
    ):
        entries = app.state.ctx.record.audit.count()
        counter.reset()
        page = client.get(f"/fhir/{query}", headers=headers)
        assert page.status_code == 200, page.text
        assert page.json()["total"] >= 1
        assert counter.transactions == 1, (query, counter.transactions, counter.statements)
        assert app.state.ctx.record.audit.count() == entries + 1  # the one patient it names
