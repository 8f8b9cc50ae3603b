"""FHIR resources as a shared-record integrator validates them: R4 structure (``fhir.resources`` R4B, whose
Observation, DiagnosticReport and Bundle are R4's) and the vital-signs profiles' rules."""

from __future__ import annotations

import uuid
from typing import Any

from _api_env import Env, TestClient
from fhir.resources.R4B.observation import Observation

LOINC = "http://loinc.org"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def _vitals(client: TestClient, env: Env, **signs: object) -> dict[str, Any]:
    body = {"patient": {"identifier": f"RV-{uuid.uuid4().hex[:10]}"}, **signs}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _blood_pressure(client: TestClient, env: Env, patient_id: str) -> dict[str, Any]:
    response = client.get(
        "/fhir/Observation",
        params={"patient": patient_id, "category": "vital-signs"},
        headers=env.headers("clinician"),
    )
    assert response.status_code == 200, response.text
    panels = [
        e["resource"]
        for e in response.json()["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "85354-9"
    ]
    assert len(panels) == 1
    Observation.model_validate(panels[0])
    return panels[0]


def _component(panel: dict[str, Any], code: str) -> dict[str, Any]:
    found = [
        c
        for c in panel["component"]
        if {"system": LOINC, "code": code}.items() <= c["code"]["coding"][0].items()
    ]
    assert len(found) == 1, (code, panel["component"])
    return found[0]


def test_blood_pressure_panel_has_both_components_when_one_pressure_is_missing(
    client: TestClient, env: Env
) -> None:
    # The FHIR R4 blood-pressure profile requires a systolic (8480-6) and a diastolic (8462-4) component,
    # each with a value or a dataAbsentReason (vs-3): a validator refuses a panel without one of them.
    for sent, missing in (({"systolic_bp": 105}, "8462-4"), ({"diastolic_bp": 65}, "8480-6")):
        panel = _blood_pressure(client, env, _vitals(client, env, **sent)["patient"]["id"])
        present = "8480-6" if missing == "8462-4" else "8462-4"
        measured = _component(panel, present)["valueQuantity"]
        assert measured["code"] == "mm[Hg]" and measured["value"] == next(iter(sent.values()))
        absent = _component(panel, missing)
        assert "valueQuantity" not in absent
        assert absent["dataAbsentReason"]["coding"][0]["system"] == DATA_ABSENT
    both = _blood_pressure(
        client, env, _vitals(client, env, systolic_bp=120, diastolic_bp=80)["patient"]["id"]
    )
    assert [c["valueQuantity"]["value"] for c in both["component"]] == [120, 80]
    assert all("dataAbsentReason" not in c for c in both["component"])
