"""A reading sent twice shows as one line on the worklist, by two senders of one ward.

Before, a monitor's gateway and a nurse's app of the same facility sending one reading (same patient,
same charted time, same values) filed two results: two worklist lines to review for one reading. The
trend already counted such copies once; the worklist did not.
"""

from __future__ import annotations

import uuid
from typing import Any

from _api_env import Env, TestClient


def _body(identifier: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient": {"identifier": identifier},
        "observed_at": "2026-11-22T08:15:00+01:00",
        "respiratory_rate": 24,
        "spo2": 93,
        "heart_rate": 118,
        "temperature": 38.6,
        "consciousness": "A",
    }
    body.update(changes)
    return body


def _post(client: TestClient, env: Env, body: dict[str, Any], *, subject: str, facility: str = "F1"):
    headers = env.headers("clinician", subject=subject, facility=facility)
    return client.post("/v1/vitals", json=body, headers=headers)


def _lines(client: TestClient, env: Env, identifier: str, facility: str = "F1") -> list[str]:
    headers = env.headers("radiologist", facility=facility)
    response = client.get("/v1/worklist", params={"limit": 500}, headers=headers)
    assert response.status_code == 200, response.text
    return [i["result_id"] for i in response.json()["items"] if i["patient"]["identifier"] == identifier]


def test_a_gateway_and_a_nurses_app_sending_one_reading_make_one_worklist_line(
    client: TestClient, env: Env
) -> None:
    identifier = f"IPP-R-{uuid.uuid4().hex[:10]}"
    body = _body(identifier)
    gateway = _post(client, env, body, subject="monitor-gateway")
    nurse = _post(client, env, body, subject="nurse-app")
    assert gateway.status_code == 201, gateway.text
    assert nurse.status_code == 200, nurse.text
    assert nurse.json()["result_id"] == gateway.json()["result_id"]
    assert _lines(client, env, identifier) == [gateway.json()["result_id"]]

    # Another facility's sender files its own result, on its own worklist only.
    other = _post(client, env, body, subject="nurse-app", facility="F2")
    assert other.status_code == 201 and other.json()["result_id"] != gateway.json()["result_id"]
    assert _lines(client, env, identifier, "F2") == [other.json()["result_id"]]
    assert _lines(client, env, identifier) == [gateway.json()["result_id"]]

    # A correction (other values at the same charted time) is never swallowed by the first reading.
    corrected = _post(client, env, {**body, "spo2": 89}, subject="nurse-app")
    assert corrected.status_code == 201
    assert corrected.json()["news2"]["total"] > gateway.json()["news2"]["total"]
    assert len(_lines(client, env, identifier)) == 2


def test_readings_without_observed_at_are_each_filed(client: TestClient, env: Env) -> None:
    """Untimed copies cannot be told from new readings of the same values: each is a result (the
    sender charts ``observed_at`` or sends an ``Idempotency-Key`` to make a retry safe)."""
    identifier = f"IPP-U-{uuid.uuid4().hex[:10]}"
    untimed = {k: v for k, v in _body(identifier).items() if k != "observed_at"}
    first = _post(client, env, untimed, subject="monitor-gateway")
    second = _post(client, env, untimed, subject="monitor-gateway")
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert len(_lines(client, env, identifier)) == 2
