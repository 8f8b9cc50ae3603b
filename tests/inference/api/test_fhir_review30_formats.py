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
