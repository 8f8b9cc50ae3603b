"""GET /v1/results/{id}, GET /v1/worklist and POST /v1/results/{id}/feedback."""

from __future__ import annotations

import uuid
from typing import Any

from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid

NORMAL: dict[str, Any] = {
    "respiratory_rate": 16,
    "spo2": 98,
    "on_oxygen": False,
    "systolic_bp": 120,
    "diastolic_bp": 80,
    "heart_rate": 70,
    "temperature": 37.0,
    "consciousness": "A",
}


def _vitals(client: TestClient, env: Env, **changes: Any) -> dict[str, Any]:
    body = {"patient": {"identifier": f"W-{uuid.uuid4().hex[:10]}"}, **NORMAL, **changes}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    return response.json()


def _study(client: TestClient, env: Env, *, blob: bool) -> dict[str, Any]:
    study = new_study_uid()
    files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=blob), "application/dicom"))]
    response = client.post("/v1/studies", files=files, headers=env.headers("pacs", facility="F1"))
    assert response.status_code == 201, response.text
    return response.json()


def test_worklist_is_most_urgent_first_then_oldest_first(client: TestClient, env: Env) -> None:
    routine = _vitals(client, env)
    critical_imaging = _study(client, env, blob=True)
    urgent = _vitals(client, env, consciousness="C")
    critical_triage = _vitals(client, env, respiratory_rate=30, spo2=85, heart_rate=140)
    assert (routine["priority"], urgent["priority"]) == ("routine", "urgent")
    assert critical_imaging["priority"] == critical_triage["priority"] == "critical"

    response = client.get("/v1/worklist", headers=env.headers("radiologist"))
    assert response.status_code == 200
    ids = [item["result_id"] for item in response.json()["items"]]
    expected = [r["result_id"] for r in (critical_imaging, critical_triage, urgent, routine)]
    assert [i for i in ids if i in expected] == expected

    page = client.get(
        "/v1/worklist", params={"limit": 1, "offset": 1}, headers=env.headers("radiologist")
    ).json()
    assert page["limit"] == 1 and page["offset"] == 1 and len(page["items"]) == 1
    assert (
        client.get("/v1/worklist", params={"limit": 0}, headers=env.headers("radiologist")).status_code == 400
    )


def test_feedback_is_stored_and_closes_the_result(client: TestClient, env: Env) -> None:
    result = _study(client, env, blob=True)
    rid = result["result_id"]
    headers = env.headers("radiologist", subject="dr-reader")
    body = {
        "verdicts": [
            {"code": "pneumothorax", "verdict": "agree"},
            {"code": "nodule", "verdict": "correct", "correct_label": True},
        ]
    }
    response = client.post(f"/v1/results/{rid}/feedback", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json() == {"result_id": rid, "recorded": 2}
    assert client.get(f"/v1/results/{rid}", headers=headers).json()["status"] == "reviewed"
    items = client.get("/v1/worklist", params={"limit": 500}, headers=headers).json()["items"]
    assert rid not in {item["result_id"] for item in items}


def test_feedback_refusals(client: TestClient, env: Env) -> None:
    rid = _study(client, env, blob=False)["result_id"]
    headers = env.headers("radiologist")
    unknown = client.post(
        f"/v1/results/{rid}/feedback",
        json={"verdicts": [{"code": "fracture", "verdict": "agree"}]},
        headers=headers,
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_feedback"
    no_label = client.post(
        f"/v1/results/{rid}/feedback",
        json={"verdicts": [{"code": "nodule", "verdict": "correct"}]},
        headers=headers,
    )
    assert no_label.status_code == 400
    empty = client.post(f"/v1/results/{rid}/feedback", json={"verdicts": []}, headers=headers)
    assert empty.status_code == 400
    missing = client.post(
        f"/v1/results/{uuid.uuid4()}/feedback",
        json={"verdicts": [{"code": "nodule", "verdict": "agree"}]},
        headers=headers,
    )
    assert missing.status_code == 404
    clinician = client.post(
        f"/v1/results/{rid}/feedback",
        json={"verdicts": [{"code": "nodule", "verdict": "agree"}]},
        headers=env.headers("clinician"),
    )
    assert clinician.status_code == 403


def test_triage_feedback_uses_the_deterioration_code(client: TestClient, env: Env) -> None:
    rid = _vitals(client, env)["result_id"]
    response = client.post(
        f"/v1/results/{rid}/feedback",
        json={"verdicts": [{"code": "deterioration", "verdict": "disagree"}]},
        headers=env.headers("radiologist"),
    )
    assert response.status_code == 201


def test_result_ids_are_validated(client: TestClient, env: Env) -> None:
    headers = env.headers("clinician")
    bad = client.get("/v1/results/not-a-uuid", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
    unknown = client.get(f"/v1/results/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    triage = _vitals(client, env)
    same = client.get(f"/v1/results/{triage['result_id']}", headers=headers)
    assert same.status_code == 200
    assert {k: v for k, v in same.json().items() if k != "rationale"} == {
        k: v for k, v in triage.items() if k != "rationale"
    }
