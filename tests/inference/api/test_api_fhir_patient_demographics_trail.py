"""A count-only Patient search by demographics (`_summary=count`, `_count=0`, a page past the end) tells
the caller that a person of that name and birth date is on file: the trail names that patient, as it
does for a search scoped to one patient id. Before, the entry named nobody, so an insider could probe
"is this person one of our patients" without leaving a trace a privacy officer could follow."""

from __future__ import annotations

import uuid

from _api_env import Env, TestClient
from test_api_fhir_everything import _bundle, _trail


def _file(client: TestClient, env: Env, name: str, birth: str) -> str:
    """The FHIR id of a new patient of F1."""
    identifier = f"DT-{uuid.uuid4().hex[:10]}"
    body = {"patient": {"identifier": identifier, "name": name, "birth_date": birth}, "respiratory_rate": 18}
    headers = env.headers("clinician", facility="F1")
    assert client.post("/v1/vitals", json=body, headers=headers).status_code == 201
    found = _bundle(client.get("/fhir/Patient", params={"identifier": identifier}, headers=headers))
    return str(found["entry"][0]["resource"]["id"])


def test_a_count_only_demographic_search_names_the_patients_it_counts(client: TestClient, env: Env) -> None:
    marker = uuid.uuid4().hex[:8]
    probed = _file(client, env, f"Haddad{marker}^Leila", "1984-09-12")
    _file(client, env, f"Haddad{marker}^Omar", "1950-01-01")  # same family, another birth date
    subject = f"probe-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", facility="F1", subject=subject)
    probes = (
        {"family": f"haddad{marker}", "birthdate": "1984-09-12", "_summary": "count"},
        {"name": f"leila haddad{marker}", "_count": "0"},
        {"family": f"haddad{marker}", "given": "lei", "_offset": "10"},  # a page past the end
    )
    for params in probes:
        counted = _bundle(client.get("/fhir/Patient", params=params, headers=headers))
        assert counted["total"] == 1 and not counted.get("entry"), params
    reads = [(e["patient_id"], e["outcome"]) for e in _trail(env, subject) if e["action"] == "fhir:read"]
    assert reads == [(probed, "success")] * len(probes)


def test_a_demographic_parameter_with_a_modifier_is_refused_not_ignored(client: TestClient, env: Env) -> None:
    # FHIR clients send family:exact= to match a patient; ignored, every patient in scope came back.
    marker = uuid.uuid4().hex[:8]
    _file(client, env, f"Tazi{marker}^Nadia", "1990-04-05")
    _file(client, env, f"Idrissi{marker}^Hamza", "1991-04-05")
    headers = env.headers("clinician", facility="F1")
    for params in ({"family:exact": f"Tazi{marker}"}, {"name:contains": "zzz"}, {"gender:not": "male"}):
        refused = client.get("/fhir/Patient", params=params, headers=headers)
        assert refused.status_code == 400, params
        assert refused.json()["resourceType"] == "OperationOutcome"
