"""The FHIR R4 routes: searchset Bundles that validate, reads, the CapabilityStatement, OperationOutcomes."""

from __future__ import annotations

import uuid

from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

FHIR_JSON = "application/fhir+json"


def _file_study(client: TestClient, env: Env, patient_id: str) -> str:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=patient_id)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return response.json()["patient"]["id"]


def test_patient_by_identifier_and_imaging_study_by_patient(client: TestClient, env: Env) -> None:
    identifier = f"FH-{uuid.uuid4().hex[:8]}"
    patient_id = _file_study(client, env, identifier)
    headers = env.headers("clinician")

    response = client.get("/fhir/Patient", params={"identifier": identifier}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    bundle = Bundle.model_validate(response.json())
    assert bundle.type == "searchset" and bundle.total == 1
    assert bundle.entry[0].resource.id == patient_id

    studies = client.get("/fhir/ImagingStudy", params={"patient": f"Patient/{patient_id}"}, headers=headers)
    assert studies.status_code == 200
    bundle = Bundle.model_validate(studies.json())
    assert bundle.total == 1
    assert bundle.entry[0].resource.get_resource_type() == "ImagingStudy"

    reports = client.get("/fhir/DiagnosticReport", params={"patient": patient_id}, headers=headers)
    assert Bundle.model_validate(reports.json()).total == 1

    read = client.get(f"/fhir/Patient/{patient_id}", headers=headers)
    assert read.status_code == 200 and read.headers["content-type"].startswith(FHIR_JSON)
    assert Patient.model_validate(read.json()).id == patient_id


def test_capability_statement(client: TestClient, env: Env) -> None:
    response = client.get("/fhir/metadata", headers=env.headers("radiologist"))
    assert response.status_code == 200
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion.startswith("4.")


def test_errors_are_operation_outcomes(client: TestClient, env: Env) -> None:
    headers = env.headers("clinician")
    for path, status in (
        ("/fhir/Spaceship/1", 404),
        ("/fhir/Spaceship", 404),
        (f"/fhir/Patient/{uuid.uuid4()}", 404),
        ("/fhir/Patient?_count=many", 400),
        ("/fhir/Patient?identifier=a&identifier=b", 400),
        ("/fhir/Patient/bad$id", 400),
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith(FHIR_JSON)
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].severity == "error" and outcome.issue[0].diagnostics
    unauthenticated = client.get("/fhir/metadata")
    assert unauthenticated.status_code == 401
    assert OperationOutcome.model_validate(unauthenticated.json()).issue[0].code == "login"
