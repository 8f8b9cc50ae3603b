"""Conditional read (FHIR R4 http 3.1.0.3.1, RFC 7232): a client that caches a resource sends back its
``ETag`` (``If-None-Match``) or its ``Last-Modified`` (``If-Modified-Since``); while the resource is
unchanged the server answers 304 Not Modified with no body, and the full resource once it has changed.

A 304 is still a read: it tells the caller the resource is on file and unchanged, so it is authorised as a
read (another facility without grounds gets the read's 404, never a 304) and audited as one.

Checked with ``fhirpy`` against a live server: ``refresh()`` of a fetched resource is its conditional read.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, fhir_reads, new_study_uid
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from inference.api import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent / "ui"))
from _ui_live import live_server  # noqa: E402


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The app of ``env`` under uvicorn on loopback (fhirpy speaks HTTP, not ASGI)."""
    with live_server(create_app(env.settings)) as url:
        yield url


def _fhirpy(env: Env, base_url: str, *, facility: str = "F1", subject: str | None = None) -> SyncFHIRClient:
    token = env.headers("clinician", facility=facility, subject=subject)["Authorization"]
    return SyncFHIRClient(f"{base_url}/fhir", authorization=token)


def _conditional(fhir: SyncFHIRClient, path: str, **headers: str) -> tuple[Any, int]:
    """fhirpy's conditional GET (what ``refresh()`` sends): ``(body or None, status)``."""
    found: tuple[Any, int] = fhir._do_request("get", path, extra_headers=headers, returning_status=True)
    return found


def _file_image(
    client: TestClient, env: Env, identifier: str, name: str, study: str, sop: str
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


def test_a_cached_resource_is_not_sent_again_until_it_changes(
    client: TestClient, env: Env, base_url: str
) -> None:
    identifier, study = f"CR-{uuid.uuid4().hex[:10]}", new_study_uid()
    result = _file_image(client, env, identifier, "", study, f"{study}.1")
    patient_id, report_id = str(result["patient"]["id"]), str(result["result_id"])
    fhir = _fhirpy(env, base_url)

    # fhirpy's refresh() of a fetched resource: If-None-Match with its versionId.
    patient = fhir.reference("Patient", patient_id).to_resource()
    assert patient["meta"]["versionId"] == "1"
    assert _conditional(fhir, f"Patient/{patient_id}", **{"If-None-Match": "1"}) == (None, 304)
    assert patient.refresh()["meta"]["versionId"] == "1"
    for etag in ('W/"1"', '"1"', 'W/"7", W/"1"', "*"):
        assert _conditional(fhir, f"DiagnosticReport/{report_id}", **{"If-None-Match": etag}) == (None, 304)
    body, status = _conditional(fhir, f"DiagnosticReport/{report_id}", **{"If-None-Match": 'W/"2"'})
    assert status == 200 and body["id"] == report_id

    # The raw answer: no body, the validators a read gives.
    url, token = f"{base_url}/fhir/Patient/{patient_id}", fhir.authorization
    read = requests.get(url, headers={"Authorization": token}, timeout=30)
    assert read.headers["etag"] == 'W/"1"'
    last_modified = parsedate_to_datetime(read.headers["last-modified"])
    last_updated = datetime.fromisoformat(read.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert last_modified == last_updated.replace(microsecond=0)
    for method in ("GET", "HEAD"):
        again = requests.request(
            method, url, headers={"Authorization": token, "If-None-Match": 'W/"1"'}, timeout=30
        )
        assert again.status_code == 304 and again.content == b"", method
        assert (
            again.headers["etag"] == 'W/"1"'
            and again.headers["last-modified"] == read.headers["last-modified"]
        )

    # If-Modified-Since: not modified at or after its Last-Modified, modified before it.
    def since(moment: datetime) -> tuple[Any, int]:
        date = format_datetime(moment, usegmt=True)
        return _conditional(fhir, f"Patient/{patient_id}", **{"If-Modified-Since": date})

    assert since(last_modified) == (None, 304)
    assert since(last_modified + timedelta(days=1)) == (None, 304)
    assert since(last_modified - timedelta(seconds=1))[1] == 200
    assert _conditional(fhir, f"Patient/{patient_id}", **{"If-Modified-Since": "yesterday"})[1] == 200
    # If-None-Match decides when both are sent (RFC 7232 3.3): a stale ETag is a 200 whatever the date.
    stale = {"If-None-Match": 'W/"9"', "If-Modified-Since": format_datetime(last_modified, usegmt=True)}
    assert _conditional(fhir, f"Patient/{patient_id}", **stale)[1] == 200

    # The same facility sends the patient's name: version 2, so the cached version 1 is sent again.
    _file_image(client, env, identifier, "Synthetic^Cache", study, f"{study}.2")
    body, status = _conditional(fhir, f"Patient/{patient_id}", **{"If-None-Match": 'W/"1"'})
    assert status == 200 and body["meta"]["versionId"] == "2" and body["name"][0]["family"] == "Synthetic"
    assert patient.refresh()["meta"]["versionId"] == "2"


def test_a_not_modified_answer_is_authorised_and_audited_as_a_read(
    client: TestClient, env: Env, base_url: str
) -> None:
    identifier, study = f"CA-{uuid.uuid4().hex[:10]}", new_study_uid()
    result = _file_image(client, env, identifier, "", study, f"{study}.1")
    patient_id, report_id = str(result["patient"]["id"]), str(result["result_id"])
    ours, theirs = f"cond-f1-{uuid.uuid4().hex[:8]}", f"cond-f2-{uuid.uuid4().hex[:8]}"
    fhir = _fhirpy(env, base_url, subject=ours)
    assert _conditional(fhir, f"DiagnosticReport/{report_id}", **{"If-None-Match": 'W/"1"'}) == (None, 304)
    assert fhir_reads(env, ours) == [("DiagnosticReport", report_id, patient_id, "success")]

    # Another facility without the patient's sharing consent: the read's 404, even with the right ETag.
    other = _fhirpy(env, base_url, facility="F2", subject=theirs)
    with pytest.raises(ResourceNotFound) as read:
        other.execute(f"DiagnosticReport/{report_id}", method="get")
    for etag in ('W/"1"', "*"):
        with pytest.raises(ResourceNotFound) as refused:
            _conditional(other, f"DiagnosticReport/{report_id}", **{"If-None-Match": etag})
        assert json.loads(str(refused.value))["issue"] == json.loads(str(read.value))["issue"]
    assert fhir_reads(env, theirs) == [("DiagnosticReport", report_id, patient_id, "denied")] * 3
    # An id that is not on file is a 404, not a 304 of "*".
    with pytest.raises(ResourceNotFound):
        _conditional(fhir, f"DiagnosticReport/{uuid.uuid4()}", **{"If-None-Match": "*"})


def test_the_capability_statement_declares_conditional_read(client: TestClient, env: Env) -> None:
    response = client.get("/fhir/metadata", headers=env.headers("clinician"))
    statement = CapabilityStatement.model_validate(response.json())
    rest = statement.rest[0] if statement.rest else None
    assert rest is not None and rest.resource is not None
    declared = {r.type: r.conditionalRead for r in rest.resource if r.type != "AuditEvent"}
    assert declared and set(declared.values()) == {"full-support"}, declared
