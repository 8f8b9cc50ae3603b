"""An integrator keeping a copy of the record in step with ``fhirpy`` (review 32): a Patient and an
ImagingStudy change after they are filed (a name sent later, a later image of the study), say when in
``meta.lastUpdated``, and come back to ``_lastUpdated`` and ``$everything?_since`` searches once changed."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhirpy import SyncFHIRClient

from inference.api import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent / "ui"))
from _ui_live import live_server  # noqa: E402


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The app of ``env`` under uvicorn on loopback (fhirpy speaks HTTP, not ASGI)."""
    with live_server(create_app(env.settings)) as url:
        yield url


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _send_image(client: TestClient, env: Env, identifier: str, study: str) -> None:
    blob = chest_dicom(
        study=study, sop=f"{study}.{uuid.uuid4().int % 10**6}", blob=True, patient_id=identifier
    )
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text


def test_a_syncing_client_sees_what_changed_and_when(client: TestClient, env: Env, base_url: str) -> None:
    fhir = SyncFHIRClient(
        f"{base_url}/fhir", authorization=env.headers("clinician", facility="F1")["Authorization"]
    )
    identifier, study = f"LU-{uuid.uuid4().hex[:10]}", new_study_uid()
    # The vital signs come first, with the identifier alone; the image brings the patient's name.
    vitals = {"patient": {"identifier": identifier}, "respiratory_rate": 24, "spo2": 93, "heart_rate": 110}
    filed = client.post("/v1/vitals", json=vitals, headers=env.headers("clinician", facility="F1"))
    assert filed.status_code == 201, filed.text
    patient_id = filed.json()["patient"]["id"]
    nameless = fhir.reference("Patient", patient_id).to_resource()
    assert "name" not in nameless and nameless["meta"]["lastUpdated"]

    named_after = _now()
    _send_image(client, env, identifier, study)
    patient = fhir.reference("Patient", patient_id).to_resource()
    assert patient["name"] and patient["meta"]["lastUpdated"] >= named_after
    [imaging_study] = fhir.resources("ImagingStudy").search(patient=patient_id).fetch()
    assert imaging_study["numberOfInstances"] == 1
    changed = fhir.resources("Patient").search(_lastUpdated=f"ge{named_after}").fetch_all()
    assert [p.id for p in changed] == [patient_id]

    grown_after = _now()
    _send_image(client, env, identifier, study)  # a later image of the same study
    [grown] = (
        fhir.resources("ImagingStudy").search(patient=patient_id, _lastUpdated=f"ge{grown_after}").fetch()
    )
    assert grown.id == imaging_study.id and grown["numberOfInstances"] == 2
    assert grown["meta"]["lastUpdated"] >= grown_after
    assert fhir.resources("Patient").search(_id=patient_id, _lastUpdated=f"ge{grown_after}").fetch() == []
    # $everything since then: the study (changed) and the new result, not the Patient (unchanged).
    page: dict[str, Any] = fhir.execute(
        f"Patient/{patient_id}/$everything", method="get", params={"_since": grown_after}
    )
    Bundle.model_validate(page)
    kinds = {e["resource"]["resourceType"] for e in page["entry"] if e["search"]["mode"] == "match"}
    assert kinds == {"ImagingStudy", "DiagnosticReport", "Observation", "Provenance"}
