"""Hostile values that only the production database notices, sent through the real app on SQLite and on a
real PostgreSQL (``tests/_postgres.py``): PostgreSQL text cannot hold NUL, and its columns refuse a value
longer than declared where SQLite stores anything. Each is refused with a 4xx that says what was wrong,
never a 500, and never a 503 "retry later" for input that fails every time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import BytesIO

import pydicom
import pytest
from _security_env import Env, TestClient, chest_dicom, new_study_uid, related_body

from inference.api import create_app


@pytest.fixture(scope="module")
def served(backend_env: Env) -> Iterator[tuple[TestClient, Env]]:
    # raise_server_exceptions=False: a 500 must show up as a 500 answer, as a real client would see it.
    with TestClient(create_app(backend_env.settings), raise_server_exceptions=False) as client:
        yield client, backend_env


@pytest.mark.parametrize(
    ("resource", "query"),
    [
        ("Observation", "patient=%00"),
        ("Patient", "identifier=IPP%00-1"),
        ("Patient", "identifier=urn:dxassist:issuer:A%00|IPP-1"),
        ("DiagnosticReport", "_id=%01abc"),
        ("AuditEvent", "agent=dr%00x"),
        ("AuditEvent", "patient=%00"),
    ],
)
def test_control_characters_in_fhir_searches_are_refused_422(
    served: tuple[TestClient, Env], resource: str, query: str
) -> None:
    client, env = served
    role = "auditor" if resource == "AuditEvent" else "admin"
    response = client.get(f"/fhir/{resource}?{query}", headers=env.headers(role))
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "control character" in outcome["issue"][0]["diagnostics"]


def test_a_nul_in_the_sign_in_username_is_refused_before_any_sign_in(served: tuple[TestClient, Env]) -> None:
    client, _env = served
    client.cookies.clear()
    form = client.get("/ui/signin")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found is not None
    response = client.post(
        "/ui/signin",
        data={"username": "admin\x00", "password": "not the password", "csrf_token": found.group(1)},
        follow_redirects=False,
    )
    # Refused like any control character in a form field (422 page), before the record is asked.
    assert response.status_code == 422, response.text
    assert "Invisible characters refused" in response.text
    client.cookies.clear()


@pytest.mark.parametrize("issuer", ["ß" * 100, "ﬃ" * 128], ids=["sharp-s", "ffi-ligature"])
def test_an_issuer_too_long_once_upper_cased_is_refused_422(
    served: tuple[TestClient, Env], issuer: str
) -> None:
    client, env = served
    body = {
        "patient": {"identifier": "IPP-ISSUER-1", "issuer": issuer},
        "respiratory_rate": 18,
        "heart_rate": 80,
        "spo2": 97,
    }
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_value"
    assert "128 characters once upper-cased" in response.json()["error"]["message"]


def test_stow_and_upload_refuse_an_issuer_too_long_once_upper_cased_for_good(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    study = new_study_uid()
    ds = pydicom.dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1")))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.IssuerOfPatientID = "ﬃ" * 64  # 64 characters (LO's limit), 192 once upper-cased
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    body, content_type = related_body([("application/dicom", out.getvalue())])
    stow = client.post(
        "/dicomweb/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )
    assert stow.status_code == 409, stow.text
    [failed] = stow.json()["00081198"]["Value"]
    # Cannot understand (0xC000): a refusal, not out of resources (0xA700), which the PACS sends again.
    assert failed["00081197"]["Value"] == [0xC000]
    upload = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", out.getvalue(), "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert upload.status_code == 422 and upload.json()["error"]["code"] == "invalid_value", upload.text


def test_an_audit_search_for_a_patient_that_is_no_id_matches_nothing(served: tuple[TestClient, Env]) -> None:
    client, env = served
    response = client.get(f"/fhir/AuditEvent?patient={'x' * 300}", headers=env.headers("auditor"))
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "Bundle" and response.json()["total"] == 0
