"""POST /v1/vitals is idempotent: a retried or duplicated observation files one result."""

from __future__ import annotations

import uuid
from typing import Any

from _api_env import Env, TestClient


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient": {"identifier": f"IPP-I-{uuid.uuid4().hex[:10]}"},
        "observed_at": "2026-11-22T08:15:00+01:00",
        "respiratory_rate": 24,
        "spo2": 93,
        "on_oxygen": False,
        "systolic_bp": 100,
        "heart_rate": 118,
        "temperature": 38.6,
        "consciousness": "A",
    }
    body.update(changes)
    return body


def _post(client: TestClient, env: Env, body: dict[str, Any], key: str | None = None, **who: Any):
    headers = env.headers(who.pop("role", "clinician"), **who)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/vitals", json=body, headers=headers)


def _worklist_ids(client: TestClient, env: Env) -> list[str]:
    response = client.get("/v1/worklist", params={"limit": 500}, headers=env.headers("radiologist"))
    assert response.status_code == 200, response.text
    return [item["result_id"] for item in response.json()["items"]]


def test_the_same_key_returns_the_same_result_once(client: TestClient, env: Env) -> None:
    body, key = _body(), f"retry-{uuid.uuid4()}"
    first = _post(client, env, body, key)
    assert first.status_code == 201, first.text
    again = _post(client, env, body, key)
    assert again.status_code == 200, again.text
    assert again.json()["result_id"] == first.json()["result_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json() == first.json()
    assert _worklist_ids(client, env).count(first.json()["result_id"]) == 1


def test_the_same_key_with_other_content_is_refused(client: TestClient, env: Env) -> None:
    body, key = _body(), f"reuse-{uuid.uuid4()}"
    assert _post(client, env, body, key).status_code == 201
    other = _post(client, env, {**body, "heart_rate": 80}, key)
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and "Idempotency-Key" in error["message"]


def test_sixteen_exact_duplicates_without_a_key_file_one_result(client: TestClient, env: Env) -> None:
    body = _body()
    answers = [_post(client, env, body) for _ in range(16)]
    assert [a.status_code for a in answers] == [201] + [200] * 15
    ids = {a.json()["result_id"] for a in answers}
    assert len(ids) == 1
    assert _worklist_ids(client, env).count(ids.pop()) == 1
    # The same instant written in another time zone is the same observation.
    utc = _post(client, env, {**body, "observed_at": "2026-11-22T07:15:00Z"})
    assert utc.status_code == 200 and utc.json()["result_id"] == answers[0].json()["result_id"]


def test_what_differs_is_a_new_observation(client: TestClient, env: Env) -> None:
    body = _body()
    first = _post(client, env, body).json()["result_id"]
    later = _post(client, env, {**body, "observed_at": "2026-11-22T09:15:00+01:00"})
    other_value = _post(client, env, {**body, "temperature": 38.7})
    other_facility = _post(client, env, body, subject="another-nurse", facility="F2")
    for answer in (later, other_value, other_facility):
        assert answer.status_code == 201, answer.text
        assert answer.json()["result_id"] != first
    # Another sender of the same facility sends the same reading (test_api_vitals_same_reading.py).
    assert _post(client, env, body, subject="another-nurse").json()["result_id"] == first
    # Without an observation time the server uses "now": never a duplicate of another.
    untimed = {k: v for k, v in body.items() if k != "observed_at"}
    assert [_post(client, env, untimed).status_code for _ in range(2)] == [201, 201]
    # A new key on an exact duplicate is still the same observation.
    assert _post(client, env, body, f"new-{uuid.uuid4()}").json()["result_id"] == first


def test_a_malformed_key_is_refused(client: TestClient, env: Env) -> None:
    for key in ("", "x" * 256, "tab\there"):
        response = _post(client, env, _body(), key)
        assert response.status_code == 400, (key, response.text)
        assert response.json()["error"]["code"] == "invalid_field"
