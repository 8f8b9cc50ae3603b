"""``GET /fhir/Patient/{id}/$everything``: one patient's record in one paged Bundle, exactly what the per-type
searches show the same caller, refused and audited as a read of the Patient is."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirpy import SyncFHIRClient

from inference.api import create_app
from inference.record import Record

sys.path.insert(0, str(Path(__file__).resolve().parent / "ui"))
from _ui_live import live_server  # noqa: E402

FHIR_JSON = "application/fhir+json"
TYPES = ("ImagingStudy", "DiagnosticReport", "RiskAssessment", "Observation", "Provenance")
CONSENT = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}


def _file_study(client: TestClient, env: Env, identifier: str, facility: str) -> str:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=identifier)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility=facility),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


def _file_vitals(client: TestClient, env: Env, identifier: str, facility: str) -> str:
    body = {"patient": {"identifier": identifier}, "respiratory_rate": 24, "spo2": 93, "heart_rate": 110}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility=facility))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


def _patient(client: TestClient, env: Env, facility: str = "F1") -> str:
    """A patient of ``facility`` with an imaging result and a vitals result."""
    identifier = f"EV-{uuid.uuid4().hex[:10]}"
    patient_id = _file_study(client, env, identifier, facility)
    assert _file_vitals(client, env, identifier, facility) == patient_id
    return patient_id


@pytest.fixture(scope="module")
def patient_id(client: TestClient, env: Env) -> str:
    """A patient of F1 with an imaging result and vitals; another patient of F1 beside it."""
    _patient(client, env)
    return _patient(client, env)


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The app of ``env`` under uvicorn on loopback (fhirpy speaks HTTP, not ASGI)."""
    with live_server(create_app(env.settings)) as url:
        yield url


def _bundle(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    bundle = Bundle.model_validate(body)  # every resource of the page validates as R4(B) too
    assert bundle.type == "searchset"
    return body


def _ids(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """The matches of a page (``search.mode`` ``match``), not the resources it includes."""
    return [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match"
    ]


def _included(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources a page includes (``search.mode`` ``include``), in order."""
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"]


def _device_references(bundle: dict[str, Any]) -> set[str]:
    """The Device ids the matches of a page reference (reports' findings, assessments, provenance)."""
    found: set[str] = set()
    for entry in bundle.get("entry", []):
        if entry["search"]["mode"] != "match":
            continue
        resource = entry["resource"]
        references = [
            resource.get("device", {}).get("reference", ""),
            resource.get("performer", {}).get("reference", ""),
            *(a["who"].get("reference", "") for a in resource.get("agent", [])),
        ]
        found |= {ref.removeprefix("Device/") for ref in references if ref.startswith("Device/")}
    return found


def _per_type(client: TestClient, headers: dict[str, str], patient_id: str) -> set[tuple[str, str]]:
    """What the per-type searches return to this caller about the patient."""
    found = set(_ids(_bundle(client.get("/fhir/Patient", params={"_id": patient_id}, headers=headers))))
    for resource_type in TYPES:
        params = {"patient": patient_id, "_count": "500"}
        found |= set(_ids(_bundle(client.get(f"/fhir/{resource_type}", params=params, headers=headers))))
    return found


def _everything(
    client: TestClient, headers: dict[str, str], patient_id: str, **params: str
) -> Iterator[dict[str, Any]]:
    """Every page of the operation, following the ``next`` links."""
    url: str | None = f"/fhir/Patient/{patient_id}/$everything"
    query: dict[str, str] | None = params
    while url is not None:
        page = _bundle(client.get(url, params=query, headers=headers))
        yield page
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        query = None


def test_everything_is_what_the_per_type_searches_show_the_patient_first(
    client: TestClient, env: Env, patient_id: str
) -> None:
    headers = env.headers("clinician")
    [page] = list(_everything(client, headers, patient_id))
    ids = _ids(page)
    assert ids[0] == ("Patient", patient_id)
    assert len(ids) == len(set(ids)) == page["total"]
    expected = _per_type(client, headers, patient_id)
    assert set(ids) == expected
    # The imaging result and the vitals are both there, with their provenance.
    assert {t for t, _ in ids} == {"Patient", *TYPES}
    assert page["link"][0]["url"].endswith(f"/fhir/Patient/{patient_id}/$everything?")
    assert all(
        e["fullUrl"].endswith(f"/fhir/{t}/{i}")
        for e, (t, i) in zip(page["entry"][: len(ids)], ids, strict=True)
    )


def test_fhirpy_walks_pages_of_two_through_the_next_links(
    env: Env,
    base_url: str,
    client: TestClient,
    patient_id: str,
) -> None:
    fhir = SyncFHIRClient(f"{base_url}/fhir", authorization=env.headers("clinician")["Authorization"])
    page = fhir.execute(f"Patient/{patient_id}/$everything", method="get", params={"_count": 2})
    seen: list[tuple[str, str]] = []
    pages = 0
    while True:
        Bundle.model_validate(page)
        assert len(_ids(page)) <= 2  # matches; the Devices they reference come beside them
        seen += _ids(page)
        pages += 1
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        assert "_count=2" in following[0]
        page = fhir.execute(following[0], method="get")
    assert seen[0] == ("Patient", patient_id)
    assert len(seen) == len(set(seen)) == page["total"]
    assert pages == -(-len(seen) // 2) and pages > 2
    assert set(seen) == _per_type(client, env.headers("clinician"), patient_id)


def test_type_restricts_and_bad_parameters_are_refused_as_in_searches(
    client: TestClient, env: Env, patient_id: str
) -> None:
    headers = env.headers("clinician")
    [page] = list(_everything(client, headers, patient_id, _type="Observation"))
    observations = _bundle(client.get("/fhir/Observation", params={"patient": patient_id}, headers=headers))
    assert {t for t, _ in _ids(page)} == {"Observation"}
    assert set(_ids(page)) == set(_ids(observations)) and page["total"] == observations["total"]
    [both] = list(_everything(client, headers, patient_id, _type="RiskAssessment,Patient"))
    assert [t for t, _ in _ids(both)] == ["Patient", "RiskAssessment"]
    # Unsupported parameters are ignored (and left out of the self link) unless handling=strict.
    lenient = _bundle(
        client.get(f"/fhir/Patient/{patient_id}/$everything?_type=Patient&_sort=date", headers=headers)
    )
    assert lenient["link"][0]["url"].endswith("/$everything?_type=Patient")
    strict = {**headers, "Prefer": "handling=strict"}
    for query, head in (
        ("_sort=date", strict),
        ("_type=Device", headers),
        ("_type=Spaceship", headers),
        ("_count=-1", headers),
        ("_count=many", headers),
        ("_since=yesterday", headers),
        ("_since=2026-01-01", headers),
        ("start=2026-13-01", headers),
        ("_type=Patient&_type=Observation", headers),
    ):
        refused = client.get(f"/fhir/Patient/{patient_id}/$everything?{query}", headers=head)
        assert refused.status_code == 400, query
        assert refused.headers["content-type"].startswith(FHIR_JSON)
        outcome = OperationOutcome.model_validate(refused.json())
        assert outcome.issue[0].code == "invalid", query
        assert query.split("=")[0] in (outcome.issue[0].diagnostics or ""), query


def test_since_start_and_end_filter_by_filing_time_and_clinical_date(
    client: TestClient, env: Env, patient_id: str
) -> None:
    headers = env.headers("clinician")
    everything = set(_ids(next(_everything(client, headers, patient_id))))
    # Filed before the year 3000, all of it; nothing was filed after it.
    assert (
        set(_ids(next(_everything(client, headers, patient_id, _since="2000-01-01T00:00:00Z")))) == everything
    )
    assert _ids(next(_everything(client, headers, patient_id, _since="2999-01-01T00:00:00+01:00"))) == []
    # The study is of 2026-01-05 (its report and findings too); the vitals are of today.
    imaging_day = _ids(next(_everything(client, headers, patient_id, start="2026-01-05", end="2026-01-05")))
    studies = _ids(_bundle(client.get("/fhir/ImagingStudy", params={"patient": patient_id}, headers=headers)))
    reports = _ids(
        _bundle(client.get("/fhir/DiagnosticReport", params={"patient": patient_id}, headers=headers))
    )
    assert imaging_day[0] == ("Patient", patient_id)  # no clinical date: always kept
    assert {t for t, _ in imaging_day} == {
        "Patient",
        "ImagingStudy",
        "DiagnosticReport",
        "Observation",
        "Provenance",
    }
    assert set(studies) | set(reports) < set(imaging_day)
    later = _ids(next(_everything(client, headers, patient_id, start="2026-01-06")))
    assert {t for t, _ in later} == {"Patient", "RiskAssessment", "Observation", "Provenance"}
    assert set(imaging_day) | set(later) == everything and set(imaging_day) & set(later) == {
        ("Patient", patient_id)
    }


def _denied_like_a_read(client: TestClient, headers: dict[str, str], patient_id: str) -> None:
    read = client.get(f"/fhir/Patient/{patient_id}", headers=headers)
    everything = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers)
    # Answered as an unknown patient is, so that the caller does not learn that the patient exists.
    unknown = client.get(f"/fhir/Patient/{uuid.uuid4()}/$everything", headers=headers)
    assert read.status_code == everything.status_code == unknown.status_code == 404
    assert everything.headers["content-type"].startswith(FHIR_JSON)
    assert everything.json() == unknown.json()
    assert OperationOutcome.model_validate(everything.json()).issue[0].code == "not-found"


def test_another_facility_sees_what_its_searches_show_and_a_shared_record_with_consent(
    client: TestClient, env: Env
) -> None:
    patient_id = _patient(client, env, facility="F1")
    f1_reports = _ids(
        _bundle(
            client.get(
                "/fhir/DiagnosticReport", params={"patient": patient_id}, headers=env.headers("clinician")
            )
        )
    )
    stranger = env.headers("clinician", facility="F3")  # nothing of the patient, no consent
    _denied_like_a_read(client, stranger, patient_id)
    # F2 files vitals of the same patient: it sees its own rows, not F1's, nor the Patient (F1's first).
    identifier = _bundle(client.get(f"/fhir/Patient?_id={patient_id}", headers=env.headers("clinician")))
    value = identifier["entry"][0]["resource"]["identifier"][0]["value"]
    assert _file_vitals(client, env, value, "F2") == patient_id
    f2 = env.headers("clinician", facility="F2")
    [page] = list(_everything(client, f2, patient_id))
    mine = set(_ids(page))
    assert mine == _per_type(client, f2, patient_id)
    assert {t for t, _ in mine} == {"RiskAssessment", "Observation", "Provenance"}
    assert not mine & set(f1_reports)
    # With the patient's sharing consent, F2 and F3 see F1's record too (as their searches do).
    put = client.put(f"/v1/patients/{patient_id}/consent", json=CONSENT, headers=env.headers("clinician"))
    assert put.status_code == 200, put.text
    for headers in (f2, stranger):
        shared = set(_ids(next(_everything(client, headers, patient_id))))
        assert shared == _per_type(client, headers, patient_id)
        assert ("Patient", patient_id) in shared and set(f1_reports) <= shared


def _trail(env: Env, subject: str) -> list[dict[str, Any]]:
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=subject, limit=100)
    finally:
        record.close()
    return events


def test_each_page_is_audited_per_type_disclosed_as_queries(
    client: TestClient, env: Env, patient_id: str
) -> None:
    subject = f"everything-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", subject=subject)
    pages = list(_everything(client, headers, patient_id, _count="3"))
    disclosed = {t for page in pages for t, _ in _ids(page)}
    events = [e for e in _trail(env, subject) if e["action"] == "fhir:read"]
    assert {e["resource_type"] for e in events} == disclosed == {"Patient", *TYPES}
    assert all(e["patient_id"] == patient_id for e in events)
    assert all(e["resource_id"] is None and e["outcome"] == "success" for e in events)
    # One entry per type a page disclosed.
    assert len(events) == sum(len({t for t, _ in _ids(page)}) for page in pages)
    # As FHIR AuditEvents: DICOM 110112 Query, action E, naming the patient and the type searched.
    auditor = env.headers("auditor")
    trail = _bundle(client.get("/fhir/AuditEvent", params={"agent": subject}, headers=auditor))
    rendered = [AuditEvent.model_validate(e["resource"]) for e in trail["entry"]]
    assert len(rendered) == len(events)
    for event in rendered:
        assert (event.type.code, event.action, event.outcome) == ("110112", "E", "0")
        assert event.entity[0].what.reference == f"Patient/{patient_id}"
        assert event.entity[1].what.identifier.value in disclosed
    # A refusal is audited as a refused read of the Patient is.
    refused_subject = f"everything-refused-{uuid.uuid4().hex[:8]}"
    stranger = env.headers("clinician", facility="F3", subject=refused_subject)
    assert client.get(f"/fhir/Patient/{patient_id}/$everything", headers=stranger).status_code == 404
    [denied] = _trail(env, refused_subject)
    assert (denied["action"], denied["outcome"], denied["resource_type"], denied["resource_id"]) == (
        "fhir:read",
        "denied",
        "Patient",
        patient_id,
    )


def test_unknown_and_malformed_ids_answer_as_a_read_of_the_patient(client: TestClient, env: Env) -> None:
    subject = f"everything-unknown-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", subject=subject)
    unknown = str(uuid.uuid4())
    for patient in (unknown, "bad$id", "x" * 65):
        read = client.get(f"/fhir/Patient/{patient}", headers=headers)
        everything = client.get(f"/fhir/Patient/{patient}/$everything", headers=headers)
        assert everything.status_code == read.status_code, patient
        assert everything.status_code in (400, 404), patient
        assert everything.headers["content-type"].startswith(FHIR_JSON)
        outcome = OperationOutcome.model_validate(everything.json())
        assert outcome.issue[0].code == OperationOutcome.model_validate(read.json()).issue[0].code
    # The unknown id is audited not_found, as the read is: two entries, one per request.
    missing = [e for e in _trail(env, subject) if e["resource_id"] == unknown]
    assert [(e["outcome"], e["resource_type"]) for e in missing] == [("not_found", "Patient")] * 2


def test_everything_on_another_type_is_an_operation_outcome(
    client: TestClient, env: Env, patient_id: str
) -> None:
    headers = env.headers("clinician")
    studies = _bundle(client.get("/fhir/ImagingStudy", params={"patient": patient_id}, headers=headers))
    study_id = studies["entry"][0]["resource"]["id"]
    for path, status in (
        (f"/fhir/ImagingStudy/{study_id}/$everything", 400),
        (f"/fhir/Device/{uuid.uuid4()}/$everything", 400),
        ("/fhir/Spaceship/1/$everything", 404),
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith(FHIR_JSON)
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].diagnostics, path
        if status == 400:
            assert "Patient" in outcome.issue[0].diagnostics and "$everything" in outcome.issue[0].diagnostics


def test_capability_statement_declares_the_operation_on_patient(client: TestClient, env: Env) -> None:
    response = client.get("/fhir/metadata", headers=env.headers("clinician"))
    statement = CapabilityStatement.model_validate(response.json())
    resources = {resource.type: resource for resource in statement.rest[0].resource}
    [operation] = resources["Patient"].operation
    assert operation.name == "everything"
    assert operation.definition == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
    assert all(not resource.operation for name, resource in resources.items() if name != "Patient")


def test_a_break_the_glass_reader_gets_the_record_audited_as_break_glass(
    client: TestClient, env: Env
) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"everything-glass-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", facility="F3", subject=subject)
    _denied_like_a_read(client, headers, patient_id)
    body = {"patient_id": patient_id, "reason": "Unconscious patient in the emergency room", "minutes": 30}
    opened = client.post("/v1/break-glass", json=body, headers=headers)
    assert opened.status_code == 201, opened.text
    [page] = list(_everything(client, headers, patient_id))
    events = [e for e in _trail(env, subject) if e["action"] == "fhir:read" and e["resource_id"] is None]
    # Every entry of the page rests on the grant alone: audited break_glass, one per type disclosed.
    assert sorted(e["resource_type"] for e in events) == sorted({"Patient", *TYPES})
    assert {e["outcome"] for e in events} == {"break_glass"}
    assert _ids(page)[0] == ("Patient", patient_id)
    assert set(_ids(page)) == _per_type(client, headers, patient_id)


def test_each_page_includes_the_devices_it_references_once_not_counted(
    client: TestClient, env: Env, patient_id: str
) -> None:
    headers = env.headers("clinician")
    [page] = list(_everything(client, headers, patient_id))
    devices = _included(page)
    # The two models (imaging findings, vitals triage), each once, after the matches; total counts matches.
    assert {d["resourceType"] for d in devices} == {"Device"} and len(devices) == 2
    assert [d["id"] for d in devices] == list(dict.fromkeys(d["id"] for d in devices))
    assert {d["id"] for d in devices} == _device_references(page)
    assert page["total"] == len(_ids(page))
    modes = [e["search"]["mode"] for e in page["entry"]]
    assert modes == ["match"] * page["total"] + ["include"] * 2
    # Each as a read of the Device gives it, with the DICOM Device UID of the model version.
    for entry, device in zip(page["entry"][-2:], devices, strict=True):
        assert entry["fullUrl"].endswith(f"/fhir/Device/{device['id']}")
        read = client.get(f"/fhir/Device/{device['id']}", headers=headers)
        assert read.status_code == 200 and device == read.json()
        assert any(i["system"] == "urn:dicom:uid" for i in device["identifier"])
    # Paged: every page includes the Devices its own matches reference.
    pages = list(_everything(client, headers, patient_id, _count="2"))
    assert len(pages) > 2
    for each in pages:
        assert {d["id"] for d in _included(each)} == _device_references(each)
        assert len(_included(each)) == len({d["id"] for d in _included(each)})
    # Only the types that reference a Device bring one: the triage model's alone for the assessments.
    [assessments] = list(_everything(client, headers, patient_id, _type="RiskAssessment"))
    assert [d["id"] for d in _included(assessments)] == [
        e["resource"]["performer"]["reference"].removeprefix("Device/") for e in assessments["entry"][:1]
    ]
    for types in ("Patient,ImagingStudy", "Patient"):
        [plain] = list(_everything(client, headers, patient_id, _type=types))
        assert _included(plain) == [] and plain["total"] == len(plain["entry"]) > 0
    [counted] = list(_everything(client, headers, patient_id, _count="0"))
    assert counted["total"] > 0 and not counted.get("entry")
