"""The CapabilityStatement says which search parameters each type takes, as an integrator's client reads
it before it builds a query: a control parameter the server applies (``Prefer: handling=strict`` accepts
it) is declared, and one it refuses is not."""

from __future__ import annotations

from typing import Any

from _api_env import Env, TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

# Control parameters a FHIR client may send to any search (FHIR R4 search 3.1.1.5), with a valid value.
PROBES = {
    "_count": "1",
    "_offset": "0",
    "_summary": "count",
    "_sort": "_id",
    "_elements": "id",
    "_total": "accurate",
    "_include": "*",
    "_contained": "true",
}


def test_the_search_controls_declared_are_those_the_server_takes(client: TestClient, env: Env) -> None:
    response = client.get("/fhir/metadata", headers=env.headers("clinician"))
    assert response.status_code == 200, response.text
    statement = CapabilityStatement.model_validate(response.json())
    resources: list[Any] = statement.rest[0].resource or []
    assert resources
    for resource in resources:
        declared = {param.name for param in resource.searchParam or []}
        role = "auditor" if resource.type == "AuditEvent" else "clinician"
        headers = {**env.headers(role, facility="F1"), "Prefer": "handling=strict"}
        for name, value in PROBES.items():
            answer = client.get(f"/fhir/{resource.type}", params={name: value}, headers=headers)
            assert answer.status_code in (200, 400), answer.text
            taken = answer.status_code == 200
            assert taken == (name in declared), (
                f"{resource.type}: {name} is {'taken' if taken else 'refused'} under strict handling "
                f"but {'declared' if name in declared else 'not declared'}"
            )
