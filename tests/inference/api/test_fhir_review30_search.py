"""FHIR search as a shared-record integrator uses it: token values with their code system, partial dates,
paging that a client follows to the end while new data arrives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _file_vitals(client: TestClient, env: Env, identifier: str, observed_at: str) -> str:
    body = {
        "patient": {"identifier": identifier},
        "observed_at": observed_at,
        "respiratory_rate": 22,
        "heart_rate": 104,
    }
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


def _file_study(client: TestClient, env: Env, identifier: str) -> str:
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
def patient_id(client: TestClient, env: Env) -> str:
    """A patient of F1 with one imaging result and vital signs observed on 2026-11-22."""
    identifier = f"RV-{uuid.uuid4().hex[:10]}"
    patient = _file_study(client, env, identifier)
    assert _file_vitals(client, env, identifier, "2026-11-22T08:15:00Z") == patient
    return patient


def _search(client: TestClient, env: Env, path: str, **params: str) -> dict[str, Any]:
    response = client.get(path, params=params, headers=env.headers("clinician"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    return body


def _codes(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["category"][0]["coding"][0]["code"] for e in bundle.get("entry", []))


def test_category_token_with_its_code_system_matches(client: TestClient, env: Env, patient_id: str) -> None:
    # FHIR token search: `system|code` is what integrators send (the code alone matches too).
    plain = _search(client, env, "/fhir/Observation", patient=patient_id, category="vital-signs")
    assert plain["total"] == 2 and _codes(plain) == ["vital-signs", "vital-signs"]
    coded = _search(client, env, "/fhir/Observation", patient=patient_id, category=f"{CATEGORY}|vital-signs")
    assert coded["total"] == 2 and _codes(coded) == ["vital-signs", "vital-signs"]
    imaging = _search(client, env, "/fhir/Observation", patient=patient_id, category=f"{CATEGORY}|imaging")
    assert imaging["total"] > 0 and set(_codes(imaging)) == {"imaging"}
    # Another system, or `|code` (a code without a system), is another concept: nothing matches.
    for other in ("http://example.org/categories|vital-signs", "|vital-signs"):
        assert _search(client, env, "/fhir/Observation", patient=patient_id, category=other)["total"] == 0


@pytest.mark.parametrize(
    ("date", "matches"),
    [
        # FHIR R4 search 3.1.1.4.2: a date of any precision is the range it covers (a year, a month).
        ("2026", True),
        ("2026-11", True),
        ("eq2026-11", True),
        ("2026-10", False),
        ("ge2026-11", True),
        ("ge2026-12", False),
        ("gt2026-10", True),
        ("gt2026-11", False),
        ("le2026-11", True),
        ("lt2026-11", False),
        ("lt2027", True),
        ("2026-11-22T08:15Z", True),
    ],
)
def test_partial_dates_are_the_range_they_cover(
    client: TestClient, env: Env, patient_id: str, date: str, matches: bool
) -> None:
    bundle = _search(client, env, "/fhir/Observation", patient=patient_id, category="vital-signs", date=date)
    assert bundle["total"] == (2 if matches else 0), date


def test_partial_dates_in_audit_event_and_everything(client: TestClient, env: Env, patient_id: str) -> None:
    auditor = env.headers("auditor")
    trail = client.get("/fhir/AuditEvent", params={"patient": patient_id, "date": "ge2026"}, headers=auditor)
    assert trail.status_code == 200, trail.text
    assert trail.json()["total"] > 0
    headers = env.headers("clinician")
    types = "Observation,RiskAssessment"
    november = client.get(
        f"/fhir/Patient/{patient_id}/$everything",
        params={"_type": types, "start": "2026-11", "end": "2026-11"},
        headers=headers,
    )
    assert november.status_code == 200, november.text
    kinds = sorted(e["resource"]["resourceType"] for e in november.json()["entry"])
    assert kinds.count("RiskAssessment") == 1 and kinds.count("Observation") == 2
    october = client.get(
        f"/fhir/Patient/{patient_id}/$everything",
        params={"_type": "RiskAssessment", "end": "2026-10"},
        headers=headers,
    )
    assert october.status_code == 200 and october.json()["total"] == 0
    for bad in ("2026-13", "202", "2026-1", "ge2026-11-3"):
        refused = client.get("/fhir/Observation", params={"date": bad}, headers=headers)
        assert refused.status_code == 400, bad


@pytest.mark.parametrize(
    "path",
    ["/fhir/Observation", "/fhir/AuditEvent", "/fhir/Patient/{patient_id}/$everything"],
)
def test_a_count_above_the_page_limit_is_served_as_the_limit(
    client: TestClient, env: Env, patient_id: str, path: str
) -> None:
    # FHIR R4 search (_count): "the server is not bound to return the number requested, but cannot return
    # more". A client asking for 1000 gets pages of 500 and links that say so, not a 400.
    headers = env.headers("auditor" if "AuditEvent" in path else "clinician")
    url = path.format(patient_id=patient_id)
    params = {"_count": "1000"} if "$everything" in path else {"_count": "1000", "patient": patient_id}
    response = client.get(url, params=params, headers=headers)
    assert response.status_code == 200, response.text
    bundle = Bundle.model_validate(response.json())
    self_link = next(link.url for link in bundle.link or [] if link.relation == "self")
    assert "_count=500" in self_link and "_count=1000" not in self_link
    assert len(bundle.entry or []) <= 500
    for bad in ("-1", "many"):
        assert client.get(url, params={"_count": bad}, headers=headers).status_code == 400, bad


def _observation_codes(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["code"]["coding"][0]["code"] for e in bundle.get("entry", []))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("http://loinc.org|8867-4", ["8867-4"]),
        ("8867-4", ["8867-4"]),
        ("http://loinc.org|8867-4,http://loinc.org|9279-1", ["8867-4", "9279-1"]),
        ("http://snomed.info/sct|36118008", ["36118008"]),
        ("http://example.org/codes|8867-4", []),
        ("|8867-4", []),
    ],
)
def test_observations_by_code(
    client: TestClient, env: Env, patient_id: str, code: str, expected: list[str]
) -> None:
    # What a shared record asks for a series: one LOINC vital sign (or a finding's SNOMED CT concept). The
    # code parameter was ignored, so every Observation of the patient came back.
    headers = {**env.headers("clinician"), "Prefer": "handling=strict"}
    response = client.get("/fhir/Observation", params={"patient": patient_id, "code": code}, headers=headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    Bundle.model_validate(bundle)
    assert _observation_codes(bundle) == expected and bundle["total"] == len(expected)
    assert "code=" in bundle["link"][0]["url"]


def test_comma_separated_categories_match_any_of_them(client: TestClient, env: Env, patient_id: str) -> None:
    # FHIR R4 search 3.1.1.3: `a,b` is "a or b".
    every = _search(client, env, "/fhir/Observation", patient=patient_id)
    both = _search(client, env, "/fhir/Observation", patient=patient_id, category="imaging,vital-signs")
    assert both["total"] == every["total"] > 2
    coded = _search(
        client, env, "/fhir/Observation", patient=patient_id, category=f"{CATEGORY}|vital-signs,laboratory"
    )
    assert coded["total"] == 2 and _codes(coded) == ["vital-signs", "vital-signs"]


@pytest.mark.parametrize(
    "path", ["/fhir/Observation?patient={p}", "/fhir/AuditEvent?patient={p}", "/fhir/Patient/{p}/$everything"]
)
def test_summary_count_answers_the_total_alone(
    client: TestClient, env: Env, patient_id: str, path: str
) -> None:
    # FHIR R4 search (_summary=count): "just return a count of the matching resources". It was ignored:
    # the whole first page came back.
    headers = env.headers("auditor" if "AuditEvent" in path else "clinician")
    url = path.format(p=patient_id)
    full = client.get(url, headers=headers).json()
    query = f"{url}&_summary=count" if "?" in url else f"{url}?_summary=count"
    counted = client.get(query, headers={**headers, "Prefer": "handling=strict"})
    assert counted.status_code == 200, counted.text
    bundle = Bundle.model_validate(counted.json())
    assert not bundle.entry and full["entry"]
    # The trail grows with each search of it (each is audited); the others stand still.
    assert (bundle.total or 0) >= full["total"] if "AuditEvent" in path else bundle.total == full["total"]
    assert "_summary=count" in bundle.link[0].url
    assert [link.relation for link in bundle.link] == ["self"]
    # Other summaries are not served: ignored (left out of the self link), refused when strict.
    lenient = client.get(url, params={"_summary": "true"}, headers=headers)
    assert lenient.status_code == 200 and lenient.json()["entry"]
    assert "_summary" not in lenient.json()["link"][0]["url"]
    strict = client.get(url, params={"_summary": "true"}, headers={**headers, "Prefer": "handling=strict"})
    assert strict.status_code == 400


@pytest.mark.parametrize(
    "resource_type", ["Observation", "DiagnosticReport", "ImagingStudy", "RiskAssessment"]
)
def test_subject_is_the_patient_searched(
    client: TestClient, env: Env, patient_id: str, resource_type: str
) -> None:
    # R4 `subject` (what `patient` is a shortcut for) was ignored: `subject=Patient/A` answered every
    # patient's resources, which an integrator would file under A.
    other = f"RV-{uuid.uuid4().hex[:10]}"
    _file_study(client, env, other)
    _file_vitals(client, env, other, "2026-11-23T09:00:00Z")
    by_patient = _search(client, env, f"/fhir/{resource_type}", patient=patient_id)
    assert by_patient["total"] > 0
    for subject in (f"Patient/{patient_id}", patient_id):
        by_subject = _search(client, env, f"/fhir/{resource_type}", subject=subject)
        assert by_subject["total"] == by_patient["total"], subject
        assert {e["resource"]["subject"]["reference"] for e in by_subject["entry"]} == {
            f"Patient/{patient_id}"
        }
    assert _search(client, env, f"/fhir/{resource_type}", subject=f"Group/{patient_id}")["total"] == 0
    # Both given: both hold.
    assert _search(client, env, f"/fhir/{resource_type}", subject=patient_id, patient=patient_id)["total"] > 0
    other_id = _search(client, env, "/fhir/Patient", identifier=other)["entry"][0]["resource"]["id"]
    assert _search(client, env, f"/fhir/{resource_type}", subject=patient_id, patient=other_id)["total"] == 0


def test_a_count_only_search_by_subject_is_audited_under_the_patient(
    client: TestClient, env: Env, patient_id: str
) -> None:
    subject = f"sub-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", subject=subject)
    response = client.get(
        "/fhir/Observation", params={"subject": f"Patient/{patient_id}", "_count": "0"}, headers=headers
    )
    assert response.status_code == 200 and response.json()["total"] > 0
    trail = client.get("/fhir/AuditEvent", params={"agent": subject}, headers=env.headers("auditor")).json()
    patients = [
        entity["what"]["reference"]
        for event in trail["entry"]
        for entity in event["resource"].get("entity", [])
        if "reference" in entity["what"]
    ]
    assert patients == [f"Patient/{patient_id}"]


def test_comma_separated_ids_fetch_each_of_them(client: TestClient, env: Env, patient_id: str) -> None:
    # `_id=a,b` is "a or b" (FHIR R4 token search): how a client resolves several references in one call.
    other = _file_study(client, env, f"RV-{uuid.uuid4().hex[:10]}")
    patients = _search(client, env, "/fhir/Patient", _id=f"{patient_id},{other}")
    assert sorted(e["resource"]["id"] for e in patients["entry"]) == sorted([patient_id, other])
    observations = _search(client, env, "/fhir/Observation", patient=patient_id)["entry"]
    finding = next(e["resource"]["id"] for e in observations if e["resource"]["status"] == "preliminary")
    vital = next(e["resource"]["id"] for e in observations if e["resource"]["status"] == "final")
    both = _search(client, env, "/fhir/Observation", _id=f"{finding},{vital},no-such-id")
    assert sorted(e["resource"]["id"] for e in both["entry"]) == sorted([finding, vital])
    reports = _search(client, env, "/fhir/DiagnosticReport", patient=patient_id)["entry"]
    report = reports[0]["resource"]["id"]
    found = _search(client, env, "/fhir/DiagnosticReport", _id=f"nothing,{report}")
    assert [e["resource"]["id"] for e in found["entry"]] == [report]
    studies = _search(client, env, "/fhir/ImagingStudy", patient=patient_id)["entry"]
    study = studies[0]["resource"]["id"]
    assert _search(client, env, "/fhir/ImagingStudy", _id=f"{study},x")["total"] == 1


def test_risk_assessments_are_searched_by_when_the_signs_were_measured(
    client: TestClient, env: Env, patient_id: str
) -> None:
    # RiskAssessment took no `date`: an interface engine asking for a day's assessments got every one of the
    # patient's (the unknown parameter ignored, as FHIR's lenient handling does), and the
    # CapabilityStatement did not offer it.
    for date, total in (
        ("2026-11-22", 1),
        ("ge2026-11-22T08:15Z", 1),
        ("gt2026-11-22T08:15Z", 0),
        ("2026-10", 0),
    ):
        bundle = _search(client, env, "/fhir/RiskAssessment", patient=patient_id, date=date)
        assert bundle["total"] == total, date
        assert f"date={date}".replace(":", "%3A") in bundle["link"][0]["url"], "the self link names it"
    refused = client.get("/fhir/RiskAssessment", params={"date": "2026-13"}, headers=env.headers("clinician"))
    assert refused.status_code == 400
    capability = client.get("/fhir/metadata", headers=env.headers("clinician")).json()
    offered = {
        p["name"]
        for resource in capability["rest"][0]["resource"]
        if resource["type"] == "RiskAssessment"
        for p in resource["searchParam"]
    }
    assert "date" in offered


def test_imaging_studies_are_searched_by_their_study_date(
    client: TestClient, env: Env, patient_id: str
) -> None:
    # ImagingStudy took no `started`: a PACS integrator asking for a day's studies got every one of the
    # patient's. The fixture's study is dated 2026-01-05 (the test files' Study Date).
    for started, total in (("2026-01-05", 1), ("2026-01", 1), ("ge2026-01-06", 0), ("lt2026-01-05", 0)):
        bundle = _search(client, env, "/fhir/ImagingStudy", patient=patient_id, started=started)
        assert bundle["total"] == total, started
        if total:
            assert bundle["entry"][0]["resource"]["started"].startswith("2026-01-05")
    refused = client.get(
        "/fhir/ImagingStudy", params={"started": "2026-13"}, headers=env.headers("clinician")
    )
    assert refused.status_code == 400
