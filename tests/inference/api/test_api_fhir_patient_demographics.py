"""`GET /fhir/Patient?family=&given=&name=&birthdate=&gender=` over HTTP: the patient searched for, within
the caller's scope only, each patient disclosed audited. Before, the parameters were ignored (lenient)
and every patient the caller may read came back."""

from __future__ import annotations

import uuid
from typing import Any

from _api_env import Env, TestClient
from fhir.resources.R4B.bundle import Bundle


def _file(client: TestClient, env: Env, facility: str, name: str, birth: str, sex: str) -> str:
    identifier = f"DM-{uuid.uuid4().hex[:10]}"
    body = {
        "patient": {"identifier": identifier, "name": name, "birth_date": birth, "sex": sex},
        "respiratory_rate": 18,
    }
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility=facility))
    assert response.status_code == 201, response.text
    return identifier


def _found(client: TestClient, env: Env, facility: str, **params: str) -> list[str]:
    response = client.get("/fhir/Patient", params=params, headers=env.headers("clinician", facility=facility))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    assert all(f"{name}=" in body["link"][0]["url"] for name in params)  # applied, so in the self link
    return [entry["resource"]["identifier"][0]["value"] for entry in body.get("entry", [])]


def test_a_patient_is_found_by_demographics_within_the_callers_scope(client: TestClient, env: Env) -> None:
    marker = uuid.uuid4().hex[:8]
    own = _file(client, env, "F1", f"Zerhouni{marker} Salma", "1971-03-04", "female")
    _file(client, env, "F1", f"Zerhouni{marker} Karim", "1975-06-07", "male")
    other = _file(client, env, "F2", f"Zerhouni{marker} Salma", "1971-03-04", "female")
    found = _found(client, env, "F1", name=f"zerhouni{marker} salma", birthdate="1971-03-04", gender="female")
    assert found == [own]  # not F2's namesake, whom F1 may not read
    assert _found(client, env, "F2", name=f"zerhouni{marker}") == [other]
    refused = client.get(
        "/fhir/Patient", params={"birthdate": "1971-02-30"}, headers=env.headers("clinician", facility="F1")
    )
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
