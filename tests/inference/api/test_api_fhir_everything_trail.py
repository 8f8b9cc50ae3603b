"""``GET /fhir/Patient/{id}/$everything`` on the audit trail: a caller that may read nothing of the patient
is refused and audited whatever its parameters, and a page that lists nothing still names the patient."""

from __future__ import annotations

import uuid

from _api_env import Env, TestClient
from fhir.resources.R4B.operationoutcome import OperationOutcome
from test_api_fhir_everything import _bundle, _patient, _trail


def test_a_refused_reader_with_malformed_parameters_is_refused_and_audited_as_a_read(
    client: TestClient, env: Env
) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"everything-probe-{uuid.uuid4().hex[:8]}"
    stranger = env.headers("clinician", facility="F3", subject=subject)  # no ground on the patient
    queries = ("_count=many", "_type=Spaceship", "_since=yesterday", "_count=1&_count=2")
    for query in queries:
        response = client.get(f"/fhir/Patient/{patient_id}/$everything?{query}", headers=stranger)
        assert response.status_code == 404, query
        assert OperationOutcome.model_validate(response.json()).issue[0].code == "not-found"
    # Each probe is on the trail as a refused read of this patient, as GET /fhir/Patient/{id} is.
    assert [(e["outcome"], e["resource_type"], e["patient_id"]) for e in _trail(env, subject)] == [
        ("denied", "Patient", patient_id)
    ] * len(queries)


def test_a_page_that_lists_nothing_names_the_patient_on_the_trail(client: TestClient, env: Env) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"everything-empty-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", subject=subject)
    # _count=0 tells how many resources the patient's record holds; _since in the future that nothing new
    # was filed: both are about this patient, and the trail says so.
    counted = _bundle(client.get(f"/fhir/Patient/{patient_id}/$everything?_count=0", headers=headers))
    assert counted["total"] > 0 and not counted.get("entry")
    later = _bundle(
        client.get(
            f"/fhir/Patient/{patient_id}/$everything",
            params={"_since": "2999-01-01T00:00:00Z"},
            headers=headers,
        )
    )
    assert later["total"] == 0
    events = [e for e in _trail(env, subject) if e["action"] == "fhir:read"]
    assert [(e["patient_id"], e["outcome"]) for e in events] == [(patient_id, "success")] * 2


def test_an_empty_page_read_on_a_grant_alone_is_audited_break_glass(client: TestClient, env: Env) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"everything-glass-empty-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", facility="F3", subject=subject)
    body = {"patient_id": patient_id, "reason": "Unconscious patient in the emergency room", "minutes": 30}
    assert client.post("/v1/break-glass", json=body, headers=headers).status_code == 201
    counted = _bundle(client.get(f"/fhir/Patient/{patient_id}/$everything?_count=0", headers=headers))
    assert counted["total"] > 0
    [event] = [e for e in _trail(env, subject) if e["action"] == "fhir:read"]
    assert (event["patient_id"], event["outcome"]) == (patient_id, "break_glass")
