"""Paging as a FHIR client does it: follow the Bundle's ``next`` links to the end and get every match once,
while the record keeps changing (each page of the audit trail is itself audited)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from _loopback import live_server
from fhir.resources.R4B.bundle import Bundle
from fhirpy import SyncFHIRClient

from inference.api import create_app


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The app of ``env`` under uvicorn on loopback (fhirpy speaks HTTP, not ASGI)."""
    with live_server(create_app(env.settings)) as url:
        yield url


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


def test_fhirpy_pages_the_audit_trail_without_duplicates(client: TestClient, env: Env, base_url: str) -> None:
    identifier = f"PG-{uuid.uuid4().hex[:10]}"
    patient_id = _file_study(client, env, identifier)
    for _ in range(5):
        assert client.get(f"/fhir/Patient/{patient_id}", headers=env.headers("clinician")).status_code == 200
    auditor = env.headers("auditor", facility="F1")["Authorization"]
    fhir = SyncFHIRClient(f"{base_url}/fhir", authorization=auditor)
    first = fhir.resources("AuditEvent").search(patient=patient_id).limit(3)
    before = first.count()
    assert before >= 6
    # Newest first; each page the auditor reads names the patient and goes onto the trail on top of it.
    seqs = [int(event["id"]) for event in first.fetch_all()]
    assert len(seqs) == len(set(seqs)), f"an entry came twice: {seqs}"
    assert seqs == sorted(seqs, reverse=True)
    # Everything that was there when paging began (count() is itself audited: one more entry).
    assert len(seqs) == before + 1


def test_next_links_lead_to_the_end_of_the_audit_trail(client: TestClient, env: Env) -> None:
    identifier = f"PG-{uuid.uuid4().hex[:10]}"
    patient_id = _file_study(client, env, identifier)
    headers = {**env.headers("auditor", facility="F1"), "Prefer": "handling=strict"}
    url: str | None = f"/fhir/AuditEvent?patient={patient_id}&_count=1"
    seen: list[str] = []
    totals: set[int] = set()
    # One entry per page: each page read adds an entry about the patient; the links must still end.
    for _ in range(20):
        if url is None:
            break
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        bundle = Bundle.model_validate(response.json())
        totals.add(bundle.total or 0)
        seen += [entry.resource.id for entry in bundle.entry or []]
        url = next((link.url for link in bundle.link or [] if link.relation == "next"), None)
    assert url is None, f"still a next link after 20 pages: {seen}"
    assert len(seen) == len(set(seen)) and len(totals) == 1
    assert len(seen) == totals.pop()


_HEART_RATES = itertools.count()  # each call another reading (the same one again would be answered)


def _file_vitals(client: TestClient, env: Env, identifier: str) -> None:
    body = {
        "patient": {"identifier": identifier},
        "respiratory_rate": 20,
        "heart_rate": 51 + next(_HEART_RATES) % 40,
        "spo2": 96,
    }
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 201, response.text


def test_everything_pages_each_resource_once_while_results_arrive(client: TestClient, env: Env) -> None:
    identifier = f"PG-{uuid.uuid4().hex[:10]}"
    patient_id = _file_study(client, env, identifier)
    _file_vitals(client, env, identifier)
    headers = env.headers("clinician")
    path = f"/fhir/Patient/{patient_id}/$everything"
    whole = client.get(path, params={"_count": "500"}, headers=headers).json()
    before = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in whole["entry"]}
    url: str | None = f"{path}?_count=3"
    seen: list[tuple[str, str]] = []
    for page in range(30):
        if url is None:
            break
        response = client.get(url, headers={**headers, "Prefer": "handling=strict"})
        assert response.status_code == 200, response.text
        bundle = Bundle.model_validate(response.json())
        seen += [
            (entry.resource.get_resource_type(), str(entry.resource.id))
            for entry in bundle.entry or []
            if entry.search is not None and entry.search.mode == "match"
        ]
        if page == 1:
            # New vital signs while the client pages: a RiskAssessment, Observations and a Provenance
            # that sort among the resources of the pages still to come.
            _file_vitals(client, env, identifier)
        url = next((link.url for link in bundle.link or [] if link.relation == "next"), None)
    assert url is None
    assert len(seen) == len(set(seen)), "a resource came twice"
    assert set(seen) == before - {("Device", d) for _, d in before}
