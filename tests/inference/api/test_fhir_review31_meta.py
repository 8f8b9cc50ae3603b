"""meta.lastUpdated and ``_lastUpdated`` (review 31): an integrator that synchronises the shared record
asks for what was filed since its last run, and needs each resource to say when it was last changed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

TYPES = ("DiagnosticReport", "Observation", "RiskAssessment", "Provenance")


@pytest.fixture(scope="module")
def patient(client: TestClient, env: Env) -> str:
    """A patient of F1 with one imaging result and one triage result."""
    identifier = f"LU-{uuid.uuid4().hex[:10]}"
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", patient_id=identifier)
    filed = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert filed.status_code == 201, filed.text
    vitals = {"patient": {"identifier": identifier}, "respiratory_rate": 22, "heart_rate": 104}
    response = client.post("/v1/vitals", json=vitals, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


def _search(client: TestClient, env: Env, path: str, **params: str) -> dict[str, Any]:
    response = client.get(path, params=params, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    return body


def test_resources_say_when_they_were_last_updated(client: TestClient, env: Env, patient: str) -> None:
    for resource_type in TYPES:
        found = _search(client, env, f"/fhir/{resource_type}", patient=patient)
        assert found["total"] > 0
        for entry in found["entry"]:
            resource = entry["resource"]
            assert resource["meta"]["lastUpdated"].endswith("Z"), resource_type
            # A read by id says the same.
            read = client.get(
                f"/fhir/{resource_type}/{resource['id']}", headers=env.headers("clinician", facility="F1")
            ).json()
            assert read["meta"]["lastUpdated"] == resource["meta"]["lastUpdated"]
    report = _search(client, env, "/fhir/DiagnosticReport", patient=patient)["entry"][0]["resource"]
    assert report["meta"]["lastUpdated"] == report["issued"]  # filed once, never changed
    devices = _search(client, env, "/fhir/Device")["entry"]
    assert all(entry["resource"]["meta"]["lastUpdated"] for entry in devices)


@pytest.mark.parametrize("resource_type", [*TYPES, "Device"])
def test_last_updated_search_selects_by_when_filed(
    client: TestClient, env: Env, patient: str, resource_type: str
) -> None:
    about = {} if resource_type == "Device" else {"patient": patient}
    everything = _search(client, env, f"/fhir/{resource_type}", **about)
    stamps = sorted({e["resource"]["meta"]["lastUpdated"] for e in everything["entry"]})
    first, last = stamps[0], stamps[-1]
    assert _search(client, env, f"/fhir/{resource_type}", _lastUpdated=f"lt{first}", **about)["total"] == 0
    assert (
        _search(client, env, f"/fhir/{resource_type}", _lastUpdated=f"ge{first}", **about)["total"]
        == (everything["total"])
    )
    assert _search(client, env, f"/fhir/{resource_type}", _lastUpdated=f"gt{last}", **about)["total"] == 0
    # To the millisecond a resource shows: that resource (and any filed in the same millisecond).
    same = _search(client, env, f"/fhir/{resource_type}", _lastUpdated=last, **about)
    assert same["total"] >= 1
    assert {e["resource"]["meta"]["lastUpdated"] for e in same["entry"]} == {last}


def test_last_updated_is_declared_and_accepted_in_strict_handling(
    client: TestClient, env: Env, patient: str
) -> None:
    headers = env.headers("clinician", facility="F1")
    statement = CapabilityStatement.model_validate(client.get("/fhir/metadata", headers=headers).json())
    for resource in statement.rest[0].resource:
        if resource.type in (*TYPES, "Device"):
            assert "_lastUpdated" in {p.name for p in resource.searchParam}, resource.type
    strict = client.get(
        "/fhir/DiagnosticReport",
        params={"patient": patient, "_lastUpdated": "ge2026-01-01"},
        headers={**headers, "Prefer": "handling=strict"},
    )
    assert strict.status_code == 200 and strict.json()["total"] == 1
    bad = client.get("/fhir/DiagnosticReport", params={"_lastUpdated": "recently"}, headers=headers)
    assert bad.status_code == 400
