"""FHIR resources as a shared-record integrator validates them: R4 structure (``fhir.resources`` R4B, whose
Observation, DiagnosticReport and Bundle are R4's) and the vital-signs profiles' rules."""

from __future__ import annotations

import re
import uuid
from typing import Any

from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
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


_LITERAL = re.compile(r"^(https?://[^ ]+/)?[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for item in value.values() for r in _references(item)]
    if isinstance(value, list):
        return [r for item in value for r in _references(item)]
    return []


def test_every_reference_is_a_literal_reference_that_resolves(client: TestClient, env: Env) -> None:
    # FHIR R4 references (2.3.0 Reference.reference): `Type/id`, an absolute URL, or `#id` of a contained
    # resource. A heatmap's API path in DiagnosticReport.media.link (Reference(Media)) is none of them.
    identifier = f"RV-{uuid.uuid4().hex[:10]}"
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=identifier)
    filed = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert filed.status_code == 201, filed.text
    headers = env.headers("radiologist")
    everything = client.get(f"/fhir/Patient/{filed.json()['patient']['id']}/$everything", headers=headers)
    assert everything.status_code == 200, everything.text
    Bundle.model_validate(everything.json())
    resources = [entry["resource"] for entry in everything.json()["entry"]]
    for resource in resources:
        contained = {f"#{c['id']}" for c in resource.get("contained", [])}
        for reference in _references(resource):
            assert _LITERAL.match(reference) or reference in contained, (resource["resourceType"], reference)
    [report] = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    DiagnosticReport.model_validate(report)
    assert report["media"], "the blob study has positive findings"
    media = {f"#{c['id']}": c for c in report["contained"]}
    for item in report["media"]:
        image = media[item["link"]["reference"]]
        assert image["resourceType"] == "Media" and image["status"] == "completed"
        assert image["content"]["contentType"] == "image/png"
        png = client.get(image["content"]["url"], headers=headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    # A read gives the same report.
    read = client.get(f"/fhir/DiagnosticReport/{report['id']}", headers=headers).json()
    assert read["media"] == report["media"] and read["contained"] == report["contained"]


def test_imaging_study_names_its_study_instance_uid_in_the_dicom_uid_system(
    client: TestClient, env: Env
) -> None:
    # FHIR R4 ImagingStudy: the Study Instance UID is an identifier of system urn:dicom:uid (value
    # urn:oid:<uid>), as national imaging profiles require and as the Device's DICOM UID already is.
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=f"RV-{uuid.uuid4().hex[:10]}")
    filed = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert filed.status_code == 201, filed.text
    response = client.get(
        "/fhir/ImagingStudy",
        params={"patient": filed.json()["patient"]["id"]},
        headers=env.headers("clinician"),
    )
    [entry] = response.json()["entry"]
    ImagingStudy.model_validate(entry["resource"])
    uids = [i for i in entry["resource"]["identifier"] if i.get("system") == "urn:dicom:uid"]
    assert [i["value"] for i in uids] == [f"urn:oid:{study}"]
