"""A child's vital signs are refused, not scored by NEWS2 and a model made for adults.

NEWS2 (RCP 2017) is not validated under 16 (children are scored with a paediatric early warning score:
a heart rate of 130 or a respiratory rate of 30 is normal in an infant and scores 3 on NEWS2), and the
triage model was trained on adults (its model card: "Adults only; ... paediatrics ... out of scope, as
for NEWS2"; its synthetic patients are 18 to 100). As for a child's chest film (``paediatric_study``), a
patient under 18 at ``observed_at`` is refused with 422 ``paediatric_patient``, nothing filed, and the
answer names neither the age nor a date.
"""

from __future__ import annotations

import uuid
from typing import Any

from _api_env import Env, TestClient

OBSERVED = "2026-11-22T08:15:00Z"


def _body(birth_date: str | None, **changes: Any) -> dict[str, Any]:
    patient: dict[str, Any] = {"identifier": f"IPP-{uuid.uuid4().hex[:8]}", "sex": "female"}
    if birth_date is not None:
        patient["birth_date"] = birth_date
    return {
        "patient": patient,
        "observed_at": OBSERVED,
        "respiratory_rate": 30,
        "heart_rate": 130,
        "spo2": 97,
        "temperature": 37.2,
        "consciousness": "A",
        **changes,
    }


def _post(client: TestClient, env: Env, body: dict[str, Any]) -> Any:
    return client.post("/v1/vitals", json=body, headers=env.headers("clinician"))


def _filed(client: TestClient, env: Env, identifier: str) -> int:
    found = client.get("/fhir/Patient", params={"identifier": identifier}, headers=env.headers("clinician"))
    assert found.status_code == 200, found.text
    return int(found.json().get("total", 0))


def test_a_six_year_olds_vital_signs_are_refused_and_nothing_is_filed(client: TestClient, env: Env) -> None:
    body = _body("2020-03-04")
    response = _post(client, env, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "paediatric_patient"
    message = error["message"]
    assert "18" in message and "NEWS2" in message
    assert "2020" not in response.text and "6" not in message.replace("18", "").replace("16", "")
    assert body["patient"]["identifier"] not in response.text
    assert _filed(client, env, body["patient"]["identifier"]) == 0


def test_the_age_is_taken_at_the_observation_not_today(client: TestClient, env: Env) -> None:
    # 18 on 2026-11-22 (the observation), refused the day before: the age when the signs were measured.
    refused = _post(client, env, _body("2008-11-23"))
    assert (refused.status_code, refused.json().get("error", {}).get("code")) == (422, "paediatric_patient")
    scored = _post(client, env, _body("2008-11-22"))
    assert scored.status_code == 201, scored.text
    # Born 2008-11-22, measured the evening before the 18th birthday: refused for that observation.
    earlier = _post(client, env, _body("2008-11-22", observed_at="2026-11-21T23:00:00Z"))
    assert earlier.status_code == 422, earlier.text


def test_without_a_birth_date_the_signs_are_scored(client: TestClient, env: Env) -> None:
    response = _post(client, env, _body(None))
    assert response.status_code == 201, response.text
    assert response.json()["news2"]["total"] > 0
