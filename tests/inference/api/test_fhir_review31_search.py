"""FHIR search as an integrator of the shared record uses it (review 31): references in the absolute form
a client makes of ours, and a token with its system alone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from _api_env import Env, TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

ISSUER_SYSTEM = "urn:dxassist:issuer:"


def _file_vitals(client: TestClient, env: Env, identifier: str, issuer: str) -> str:
    body = {
        "patient": {"identifier": identifier, "issuer": issuer},
        "observed_at": "2026-11-22T08:15:00Z",
        "respiratory_rate": 22,
        "heart_rate": 104,
    }
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


@pytest.fixture(scope="module")
def issuer() -> str:
    """An assigning authority of this module's patients only."""
    return f"HOSP-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture(scope="module")
def patients(client: TestClient, env: Env, issuer: str) -> list[str]:
    """Two patients of F1 identified by ``issuer``, each with vital signs; one of another issuer."""
    ours = [_file_vitals(client, env, f"IPP-{n}-{uuid.uuid4().hex[:6]}", issuer) for n in range(2)]
    _file_vitals(client, env, f"IPP-X-{uuid.uuid4().hex[:6]}", f"{issuer}-OTHER")
    return ours


def _get(client: TestClient, env: Env, path: str, **params: str) -> Any:
    return client.get(path, params=params, headers=env.headers("clinician", facility="F1"))


def _bundle(client: TestClient, env: Env, path: str, **params: str) -> dict[str, Any]:
    response = _get(client, env, path, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    return body


def test_a_patient_given_as_our_absolute_url_is_that_patient(
    client: TestClient, env: Env, patients: list[str]
) -> None:
    patient = patients[0]
    relative = _bundle(client, env, "/fhir/Observation", patient=f"Patient/{patient}")
    assert relative["total"] == 2
    # A client resolves our relative references against our base: it searches with what it got.
    base = str(client.base_url).rstrip("/")
    for absolute in (f"{base}/fhir/Patient/{patient}", f"{base.upper()}:80/fhir/Patient/{patient}"):
        for name in ("patient", "subject"):
            found = _bundle(client, env, "/fhir/Observation", **{name: absolute})
            assert found["total"] == 2, (name, absolute)
            assert {e["resource"]["subject"]["reference"] for e in found["entry"]} == {f"Patient/{patient}"}
    # The same on the other types that take a patient.
    assessments = _bundle(client, env, "/fhir/RiskAssessment", patient=f"{base}/fhir/Patient/{patient}")
    assert assessments["total"] == 1


def test_a_count_only_search_by_our_absolute_url_is_audited_under_the_patient(
    client: TestClient, env: Env, patients: list[str]
) -> None:
    subject = f"sub-{uuid.uuid4().hex[:8]}"
    absolute = f"{str(client.base_url).rstrip('/')}/fhir/Patient/{patients[1]}"
    response = client.get(
        "/fhir/Observation",
        params={"patient": absolute, "_count": "0"},
        headers=env.headers("clinician", facility="F1", subject=subject),
    )
    assert response.status_code == 200 and response.json()["total"] == 2
    trail = client.get("/fhir/AuditEvent", params={"agent": subject}, headers=env.headers("auditor")).json()
    named = [
        entity["what"]["reference"]
        for event in trail["entry"]
        for entity in event["resource"].get("entity", [])
        if "reference" in entity["what"]
    ]
    assert named == [f"Patient/{patients[1]}"]


@pytest.mark.parametrize(
    "foreign",
    [
        "https://shared-record.example/fhir/Patient/{id}",
        "{base}/other/Patient/{id}",
        "{base}:8443/fhir/Patient/{id}",
        "http://[{id}/fhir/Patient/{id}",  # no URL urllib reads (an unclosed IPv6 bracket): it was a 500
    ],
)
def test_a_patient_on_another_server_is_refused(
    client: TestClient, env: Env, patients: list[str], foreign: str
) -> None:
    # "Nothing found" would read as "this patient has no observations": a 400 says why instead.
    base = str(client.base_url).rstrip("/")
    value = foreign.format(base=base, id=patients[0])
    for name in ("patient", "subject"):
        response = _get(client, env, "/fhir/Observation", **{name: value})
        assert response.status_code == 400, response.text
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].code == "invalid"
        assert f"{base}/fhir" in (outcome.issue[0].diagnostics or "")
        assert patients[0] not in response.text


def test_an_identifier_system_alone_matches_every_identifier_it_assigned(
    client: TestClient, env: Env, issuer: str, patients: list[str]
) -> None:
    # FHIR R4 token search: `system|` is any identifier in that system.
    found = _bundle(client, env, "/fhir/Patient", identifier=f"{ISSUER_SYSTEM}{issuer}|")
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(patients)
    assert found["total"] == 2
    unknown = _bundle(client, env, "/fhir/Patient", identifier=f"{ISSUER_SYSTEM}{issuer}-NONE|")
    assert unknown["total"] == 0


def test_head_answers_as_get_without_a_body(client: TestClient, env: Env, patients: list[str]) -> None:
    subject = f"head-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", facility="F1", subject=subject)
    for path in (
        f"/fhir/Patient/{patients[0]}",
        f"/fhir/Observation?patient={patients[0]}",
        "/fhir/metadata",
    ):
        got = client.get(path, headers=headers)
        head = client.head(path, headers=headers)
        assert got.status_code == head.status_code == 200, (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-type"].startswith("application/fhir+json")
        assert int(head.headers["content-length"]) > 0
    # The resource read has the same length as its GET (a search's Bundle id and time differ between two).
    read = f"/fhir/Patient/{patients[0]}"
    assert client.head(read, headers=headers).headers["content-length"] == str(
        len(client.get(read, headers=headers).content)
    )
    # An unknown id is a 404, as for GET; a HEAD read is a read: on the audit trail under the patient.
    assert client.head("/fhir/Patient/no-such-patient", headers=headers).status_code == 404
    head_only = f"head-{uuid.uuid4().hex[:8]}"
    assert (
        client.head(read, headers=env.headers("clinician", facility="F1", subject=head_only)).status_code
        == 200
    )
    trail = client.get("/fhir/AuditEvent", params={"agent": head_only}, headers=env.headers("auditor")).json()
    named = [
        entity["what"]["reference"]
        for event in trail["entry"]
        for entity in event["resource"].get("entity", [])
        if "reference" in entity["what"]
    ]
    assert set(named) == {f"Patient/{patients[0]}"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fhir/Patient", {"identifier": "IPP-\u202e1"}),  # a bidi override in a parameter's value
        ("/fhir/Observation", {"patient": "Patient/\u00851"}),  # a C1 control (NEL)
        ("/fhir/Patient/abc\u2028def", {}),  # a line separator in the path's id
    ],
)
def test_a_parameter_holding_a_hidden_character_is_an_invalid_value(
    client: TestClient, env: Env, path: str, params: dict[str, str]
) -> None:
    # FHIR issue type ``value`` ("an element or header value is invalid"), a kind of ``invalid``: the
    # request was refused for what the client sent, before anything was processed (it read ``processing``,
    # which a client takes for the server failing at what it was asked).
    response = _get(client, env, path, **params)
    assert response.status_code == 422, response.text
    outcome = OperationOutcome.model_validate(response.json())
    assert outcome.issue[0].code == "value"
    assert outcome.issue[0].details is not None and outcome.issue[0].details.coding is not None
    assert outcome.issue[0].details.coding[0].code == "invalid_characters"
