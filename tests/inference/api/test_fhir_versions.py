"""Versions (FHIR R4 ``versioned``): every resource says its ``meta.versionId`` (a read's ``ETag`` too), a
Patient or an ImagingStudy moves to the next version when the record completes it, and ``vread``
(``GET /fhir/{type}/{id}/_history/{vid}``) serves the current version; the record keeps no earlier one,
so a vread of an older version is 404 saying so. A vread is authorised and audited as a read is.

Checked with ``fhirpy`` against a live server, as an integrator's client would see it."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, fhir_reads, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from inference.api import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent / "ui"))
from _ui_live import live_server  # noqa: E402

FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The app of ``env`` under uvicorn on loopback (fhirpy speaks HTTP, not ASGI)."""
    with live_server(create_app(env.settings)) as url:
        yield url


def _fhirpy(env: Env, base_url: str, *, facility: str = "F1", subject: str | None = None) -> SyncFHIRClient:
    token = env.headers("clinician", facility=facility, subject=subject)["Authorization"]
    return SyncFHIRClient(f"{base_url}/fhir", authorization=token)


def _file_image(
    client: TestClient, env: Env, identifier: str, study: str, sop: str, name: str
) -> dict[str, Any]:
    blob = chest_dicom(study=study, sop=sop, blob=True, patient_id=identifier, patient_name=name)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _study_id(fhir: SyncFHIRClient, patient_id: str) -> str:
    [study] = fhir.resources("ImagingStudy").search(patient=patient_id).fetch_all()
    return str(study["id"])


def _not_kept(fhir: SyncFHIRClient, path: str) -> str:
    """The diagnostics of the 404 OperationOutcome a vread of ``path`` answers."""
    with pytest.raises(ResourceNotFound) as refused:
        fhir.execute(path, method="get")
    outcome = OperationOutcome.model_validate(json.loads(str(refused.value)))
    assert outcome.issue[0].code == "not-found"
    return str(outcome.issue[0].diagnostics)


def test_a_completed_patient_and_a_grown_study_move_to_their_next_version(
    client: TestClient, env: Env, base_url: str
) -> None:
    identifier = f"VR-{uuid.uuid4().hex[:10]}"
    vitals = {"patient": {"identifier": identifier}, "respiratory_rate": 22, "heart_rate": 104}
    filed = client.post("/v1/vitals", json=vitals, headers=env.headers("clinician", facility="F1"))
    assert filed.status_code == 201, filed.text
    patient_id = str(filed.json()["patient"]["id"])
    fhir = _fhirpy(env, base_url)

    first = fhir.execute(f"Patient/{patient_id}", method="get")
    assert first["meta"]["versionId"] == "1" and "name" not in first
    assert fhir.execute(f"Patient/{patient_id}/_history/1", method="get") == first

    # The same facility sends a study with the patient's name: the Patient is completed, version 2.
    study = new_study_uid()
    _file_image(client, env, identifier, study, f"{study}.1", "Synthetic^Vera")
    current = fhir.execute(f"Patient/{patient_id}", method="get")
    second = Patient.model_validate(current)
    assert second.meta is not None and second.meta.versionId == "2"
    assert second.name is not None and second.name[0].family == "Synthetic"
    assert fhir.execute(f"Patient/{patient_id}/_history/2", method="get") == current
    said = _not_kept(fhir, f"Patient/{patient_id}/_history/1")
    assert "only the current version" in said and "version 2" in said

    study_id = _study_id(fhir, patient_id)
    assert fhir.execute(f"ImagingStudy/{study_id}", method="get")["meta"]["versionId"] == "1"
    # A later image of the same study adds an instance: version 2; the Patient, unchanged, stays at 2.
    _file_image(client, env, identifier, study, f"{study}.2", "Synthetic^Vera")
    grown = ImagingStudy.model_validate(fhir.execute(f"ImagingStudy/{study_id}/_history/2", method="get"))
    assert grown.numberOfInstances == 2
    assert "only the current version" in _not_kept(fhir, f"ImagingStudy/{study_id}/_history/1")
    assert fhir.execute(f"Patient/{patient_id}", method="get")["meta"]["versionId"] == "2"
    # A search says the versions a read says.
    [listed] = fhir.resources("ImagingStudy").search(_id=study_id).fetch_all()
    assert listed["meta"]["versionId"] == "2"

    # The instance's history lists the one version kept: the current one.
    history = fhir.execute(f"Patient/{patient_id}/_history", method="get")
    assert Bundle.model_validate(history).type == "history" and history["total"] == 1
    [entry] = history["entry"]
    assert entry["resource"] == fhir.execute(f"Patient/{patient_id}", method="get")
    assert entry["fullUrl"] == f"{base_url}/fhir/Patient/{patient_id}"
    assert entry["response"]["etag"] == 'W/"2"'
    assert entry["response"]["lastModified"] == entry["resource"]["meta"]["lastUpdated"]


def test_reads_carry_an_etag_and_resources_filed_once_are_version_1(
    client: TestClient, env: Env, base_url: str
) -> None:
    identifier = f"VE-{uuid.uuid4().hex[:10]}"
    study = new_study_uid()
    result = _file_image(client, env, identifier, study, f"{study}.1", "Synthetic^Etag")
    headers = env.headers("clinician", facility="F1")
    for path in (f"/fhir/DiagnosticReport/{result['result_id']}", f"/fhir/Patient/{result['patient']['id']}"):
        for method in ("GET", "HEAD"):
            read = client.request(method, path, headers=headers)
            assert read.status_code == 200, read.text
            assert read.headers["etag"] == 'W/"1"', (path, method)
        vread = client.get(f"{path}/_history/1", headers=headers)
        assert vread.status_code == 200 and vread.headers["content-type"].startswith(FHIR_JSON)
        assert vread.headers["etag"] == 'W/"1"'
        assert vread.json() == client.get(path, headers=headers).json()
        # A version id that no version ever had is the same 404 as an older one.
        missing = client.get(f"{path}/_history/7", headers=headers)
        assert missing.status_code == 404 and "only the current version" in missing.text
        # The history's parameters change nothing of one version: ignored, or a 400 when strict.
        since = {"_since": "2000-01-01T00:00:00Z"}
        assert client.get(f"{path}/_history", params=since, headers=headers).json()["total"] == 1
        strict = client.get(
            f"{path}/_history", params=since, headers={**headers, "Prefer": "handling=strict"}
        )
        assert strict.status_code == 400 and "_since" in strict.json()["issue"][0]["diagnostics"]


def test_a_vread_and_a_history_are_authorised_and_audited_as_a_read(
    client: TestClient, env: Env, base_url: str
) -> None:
    identifier = f"VA-{uuid.uuid4().hex[:10]}"
    study = new_study_uid()
    result = _file_image(client, env, identifier, study, f"{study}.1", "Synthetic^Audit")
    report, patient_id = str(result["result_id"]), str(result["patient"]["id"])
    ours, theirs = f"vread-f1-{uuid.uuid4().hex[:8]}", f"vread-f2-{uuid.uuid4().hex[:8]}"
    fhir = _fhirpy(env, base_url, subject=ours)
    assert fhir.execute(f"DiagnosticReport/{report}/_history/1", method="get")["id"] == report
    _not_kept(fhir, f"DiagnosticReport/{report}/_history/2")
    assert fhir.execute(f"DiagnosticReport/{report}/_history", method="get")["total"] == 1
    assert fhir_reads(env, ours) == [
        ("DiagnosticReport", report, patient_id, "success"),
        ("DiagnosticReport", report, patient_id, "not_found"),
        ("DiagnosticReport", report, patient_id, "success"),
    ]
    # Another facility, without the patient's sharing consent: the same 404 as a read of it, denied.
    other = _fhirpy(env, base_url, facility="F2", subject=theirs)
    with pytest.raises(ResourceNotFound) as read:
        other.execute(f"DiagnosticReport/{report}", method="get")
    for path in (f"DiagnosticReport/{report}/_history/1", f"DiagnosticReport/{report}/_history"):
        with pytest.raises(ResourceNotFound) as refused:
            other.execute(path, method="get")
        assert json.loads(str(refused.value))["issue"] == json.loads(str(read.value))["issue"]
    assert fhir_reads(env, theirs) == [("DiagnosticReport", report, patient_id, "denied")] * 3


def test_the_capability_statement_declares_versions_and_vread(client: TestClient, env: Env) -> None:
    response = client.get("/fhir/metadata", headers=env.headers("clinician"))
    statement = CapabilityStatement.model_validate(response.json())
    rest = statement.rest[0] if statement.rest else None
    assert rest is not None and rest.resource is not None
    for resource in rest.resource:
        if resource.type == "AuditEvent":
            continue
        codes = {i.code for i in resource.interaction or []}
        assert codes == {"read", "vread", "history-instance", "search-type"}, resource.type
        assert resource.versioning == "versioned" and resource.readHistory is False, resource.type
