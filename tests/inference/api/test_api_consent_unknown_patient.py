"""A consent read or change for a patient id the record does not hold is on the audit trail
(``not_found``), as a read of an unknown result is: probing ids leaves a trace an auditor can see."""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing

from _api_env import Env, TestClient


def _entries(env: Env, resource_id: str) -> list[tuple[str, str, str]]:
    database = env.settings.record_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(database)) as db:
        return db.execute(
            "SELECT action, outcome, subject FROM audit_events WHERE resource_id = ? ORDER BY seq",
            (resource_id,),
        ).fetchall()


def test_consent_of_an_unknown_patient_is_404_and_audited(client: TestClient, env: Env) -> None:
    unknown = str(uuid.uuid4())
    read = client.get(f"/v1/patients/{unknown}/consent", headers=env.headers("clinician", facility="F1"))
    assert read.status_code == 404, read.text
    change = client.put(
        f"/v1/patients/{unknown}/consent",
        json={"ai_processing": "deny", "national_sharing": "deny"},
        headers=env.headers("clinician", facility="F1"),
    )
    assert change.status_code == 404, change.text
    assert _entries(env, unknown) == [
        ("consent:read", "not_found", "test-clinician"),
        ("consent:write", "not_found", "test-clinician"),
    ]
