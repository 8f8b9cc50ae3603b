"""``_format`` as FHIR clients and people write it in a URL: the ``+`` of ``application/fhir+json`` left
unencoded, which the query string decodes to a space."""

from __future__ import annotations

import pytest
from _api_env import Env, TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

FHIR_JSON = "application/fhir+json"


@pytest.mark.parametrize(
    "value", ["application/fhir+json", "application/json+fhir", "application/fhir+json;fhirVersion=4.0"]
)
def test_an_unencoded_plus_in_format_is_json(client: TestClient, env: Env, value: str) -> None:
    headers = env.headers("clinician")
    search = client.get(f"/fhir/Patient?_format={value}", headers=headers)
    assert search.status_code == 200, search.text
    assert search.headers["content-type"].startswith(FHIR_JSON)
    Bundle.model_validate(search.json())
    metadata = client.get(f"/fhir/metadata?_format={value}", headers=headers)
    assert metadata.status_code == 200, metadata.text
    CapabilityStatement.model_validate(metadata.json())


def test_xml_with_an_unencoded_plus_is_still_406(client: TestClient, env: Env) -> None:
    response = client.get("/fhir/Patient?_format=application/fhir+xml", headers=env.headers("clinician"))
    assert response.status_code == 406


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/fhir+json; fhirVersion=4.0", 200),
        ("application/fhir+json; fhirVersion=4.0.1", 200),
        # FHIR version negotiation: an R5 (or R4B) client must not get R4 resources as if they were its own.
        ("application/fhir+json; fhirVersion=5.0", 406),
        ("application/fhir+json; fhirVersion=4.3", 406),
        ("application/fhir+json; fhirVersion=5.0, application/fhir+json; fhirVersion=4.0;q=0.5", 200),
    ],
)
def test_accept_names_the_fhir_version_served(client: TestClient, env: Env, accept: str, status: int) -> None:
    response = client.get("/fhir/metadata", headers={**env.headers("clinician"), "Accept": accept})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    if status == 200:
        assert CapabilityStatement.model_validate(response.json()).fhirVersion == "4.0.1"


def test_format_with_another_fhir_version_is_406(client: TestClient, env: Env) -> None:
    headers = env.headers("clinician")
    for value, status in (
        ("application/fhir+json;fhirVersion=5.0", 406),
        ("application/fhir+json;fhirVersion=4.0", 200),
    ):
        response = client.get("/fhir/Patient", params={"_format": value}, headers=headers)
        assert response.status_code == status, value
