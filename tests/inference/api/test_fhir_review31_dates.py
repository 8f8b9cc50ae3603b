"""FHIR date search as the spec has it (review 31): a value is the range its precision implies and `eq`
matches a resource whose date lies within it; DiagnosticReport searched by date, status and code."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

LOINC = "http://loinc.org"
REPORT_STATUS = "http://hl7.org/fhir/diagnostic-report-status"


def _file_study(client: TestClient, env: Env, identifier: str) -> str:
    # The fixture's StudyDate is 2026-01-05: the report's effectiveDateTime is that whole day.
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=identifier)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


@pytest.fixture(scope="module")
def reported(client: TestClient, env: Env) -> str:
    """A patient of F1 with two imaging results, both of studies dated 2026-01-05."""
    identifier = f"DR-{uuid.uuid4().hex[:10]}"
    patient = _file_study(client, env, identifier)
    assert _file_study(client, env, identifier) == patient
    return patient


@pytest.fixture(scope="module")
def observed(client: TestClient, env: Env) -> str:
    """A patient of F1 with vital signs observed at 08:15:30 UTC on 2026-11-22."""
    body = {
        "patient": {"identifier": f"VS-{uuid.uuid4().hex[:10]}"},
        "observed_at": "2026-11-22T08:15:30Z",
        "respiratory_rate": 22,
        "heart_rate": 104,
    }
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


def _search(client: TestClient, env: Env, path: str, **params: str) -> dict[str, Any]:
    response = client.get(path, params=params, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    return body


@pytest.mark.parametrize(
    ("date", "total"),
    [
        ("2026-11-22T08:15:30Z", 2),  # to the second: the observation's own second
        ("2026-11-22T08:15Z", 2),  # to the minute: 08:15:30 lies within 08:15
        ("2026-11-22T09:15+01:00", 2),  # the same minute in another time zone
        ("2026-11-22T08:15:30.0Z", 2),  # to a tenth of a second: 08:15:30.0 to 08:15:30.1 holds it
        ("2026-11-22T08:15:30.5Z", 0),
        ("2026-11-22T08:16Z", 0),
        ("gt2026-11-22T08:15Z", 0),  # not after the minute it lies in
        ("ge2026-11-22T08:15Z", 2),
        ("le2026-11-22T08:15Z", 2),
        ("lt2026-11-22T08:15Z", 0),
        ("lt2026-11-22T08:16Z", 2),
    ],
)
def test_an_observation_date_lies_within_the_range_a_datetime_implies(
    client: TestClient, env: Env, observed: str, date: str, total: int
) -> None:
    found = _search(client, env, "/fhir/Observation", patient=observed, category="vital-signs", date=date)
    assert found["total"] == total, date


def test_audit_event_date_to_the_minute_is_that_minute(client: TestClient, env: Env, observed: str) -> None:
    auditor = env.headers("auditor")
    newest = client.get("/fhir/AuditEvent", params={"_count": "1"}, headers=auditor).json()["entry"][0]
    recorded = str(newest["resource"]["recorded"])
    minute = recorded[:16] + "Z"  # YYYY-MM-DDTHH:MM
    found = client.get("/fhir/AuditEvent", params={"date": minute, "_count": "500"}, headers=auditor).json()
    assert newest["resource"]["id"] in {e["resource"]["id"] for e in found["entry"]}
    assert all(e["resource"]["recorded"].startswith(recorded[:16]) for e in found["entry"])


@pytest.mark.parametrize(
    ("date", "total"),
    [
        ("2026-01-05", 2),
        ("2026-01", 2),
        ("2026", 2),
        ("2026-01-06", 0),
        ("2026-01-04", 0),
        ("gt2026-01-04", 2),
        ("lt2026-01-05", 0),
        ("le2026-01-05", 2),
        ("ge2026-01-06", 0),
        # The report's date is a whole day: it does not lie within one minute of it, but reaches past it.
        ("2026-01-05T12:00Z", 0),
        ("ge2026-01-05T12:00Z", 2),
        ("le2026-01-05T12:00Z", 2),
    ],
)
def test_diagnostic_reports_by_date(
    client: TestClient, env: Env, reported: str, date: str, total: int
) -> None:
    found = _search(client, env, "/fhir/DiagnosticReport", patient=reported, date=date)
    assert found["total"] == total == len(found.get("entry", [])), date


def test_diagnostic_reports_by_a_date_range_page_through(client: TestClient, env: Env, reported: str) -> None:
    query = {"patient": reported, "_count": "1"}
    first = client.get(
        "/fhir/DiagnosticReport",
        params=[*query.items(), ("date", "ge2026-01-01"), ("date", "lt2026-02")],
        headers=env.headers("clinician", facility="F1"),
    ).json()
    assert first["total"] == 2 and len(first["entry"]) == 1
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(following, headers=env.headers("clinician", facility="F1")).json()
    assert second["total"] == 2 and len(second["entry"]) == 1
    assert second["entry"][0]["resource"]["id"] != first["entry"][0]["resource"]["id"]


@pytest.mark.parametrize(
    ("params", "total"),
    [
        ({"status": "preliminary"}, 2),
        ({"status": f"{REPORT_STATUS}|preliminary"}, 2),
        ({"status": "final,amended"}, 0),
        ({"status": "final,preliminary"}, 2),
        ({"code": "18748-4"}, 2),
        ({"code": f"{LOINC}|18748-4"}, 2),
        ({"code": f"{LOINC}|24627-2"}, 0),
        ({"code": "http://snomed.info/sct|18748-4"}, 0),
    ],
)
def test_diagnostic_reports_by_status_and_code(
    client: TestClient, env: Env, reported: str, params: dict[str, str], total: int
) -> None:
    found = _search(client, env, "/fhir/DiagnosticReport", patient=reported, **params)
    assert found["total"] == total, params
    # Applied, so shown in the self link.
    self_link = next(link["url"] for link in found["link"] if link["relation"] == "self")
    assert next(iter(params)) in self_link


def test_diagnostic_report_parameters_are_declared_and_strict_refuses_others(
    client: TestClient, env: Env, reported: str
) -> None:
    headers = env.headers("clinician", facility="F1")
    statement = CapabilityStatement.model_validate(client.get("/fhir/metadata", headers=headers).json())
    report = next(r for r in statement.rest[0].resource if r.type == "DiagnosticReport")
    declared = {p.name: p.type for p in report.searchParam}
    assert {declared[n] for n in ("date", "status", "code")} == {"date", "token"}
    assert declared["date"] == "date"
    strict = {**headers, "Prefer": "handling=strict"}
    query = {"patient": reported, "date": "2026-01", "status": "preliminary", "code": "18748-4"}
    response = client.get("/fhir/DiagnosticReport", params=query, headers=strict)
    assert response.status_code == 200 and response.json()["total"] == 2
    refused = client.get("/fhir/DiagnosticReport", params={**query, "conclusion": "x"}, headers=strict)
    assert refused.status_code == 400
    assert "conclusion" in (OperationOutcome.model_validate(refused.json()).issue[0].diagnostics or "")
    # A malformed date is refused in either mode.
    assert client.get("/fhir/DiagnosticReport", params={"date": "soon"}, headers=headers).status_code == 400
