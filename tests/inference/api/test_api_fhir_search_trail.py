"""Per-type FHIR searches scoped to one patient on the audit trail: a page that lists nothing (``_count=0``,
no match) still tells the caller about that patient, so its entry names the patient."""

from __future__ import annotations

import uuid

from _api_env import Env, TestClient
from test_api_fhir_everything import _bundle, _patient, _trail


def _reads(env: Env, subject: str) -> list[tuple[str, str | None, str]]:
    """The caller's ``fhir:read`` entries, oldest first (the trail lists the newest first)."""
    return [
        (e["resource_type"], e["patient_id"], e["outcome"])
        for e in _trail(env, subject)
        if e["action"] == "fhir:read"
    ][::-1]


def test_a_count_only_search_names_the_patient_on_the_trail(client: TestClient, env: Env) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"search-count-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", subject=subject)
    searches = (
        ("Observation", {"patient": patient_id, "_count": "0"}),
        ("DiagnosticReport", {"patient": f"Patient/{patient_id}", "_count": "0"}),
        ("RiskAssessment", {"patient": patient_id, "_offset": "50"}),  # a page past the end
        ("Patient", {"_id": patient_id, "_count": "0"}),
    )
    for resource_type, params in searches:
        counted = _bundle(client.get(f"/fhir/{resource_type}", params=params, headers=headers))
        assert counted["total"] > 0 and not counted.get("entry"), resource_type
    assert _reads(env, subject) == [(t, patient_id, "success") for t, _ in searches]


def test_a_search_matching_nothing_names_the_existing_patient_an_unknown_one_nobody(
    client: TestClient, env: Env
) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"search-none-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", subject=subject)
    # The patient's vitals are of today: none of them were observed in 2001.
    none = {"patient": patient_id, "category": "vital-signs", "date": "2001-01-01"}
    assert _bundle(client.get("/fhir/Observation", params=none, headers=headers))["total"] == 0
    unknown = {"patient": str(uuid.uuid4()), "_count": "0"}
    assert _bundle(client.get("/fhir/Observation", params=unknown, headers=headers))["total"] == 0
    assert _reads(env, subject) == [("Observation", patient_id, "success"), ("Observation", None, "success")]


def test_a_count_only_search_on_a_grant_alone_is_audited_break_glass(client: TestClient, env: Env) -> None:
    patient_id = _patient(client, env, facility="F1")
    subject = f"search-glass-{uuid.uuid4().hex[:8]}"
    headers = env.headers("clinician", facility="F3", subject=subject)
    body = {"patient_id": patient_id, "reason": "Unconscious patient in the emergency room", "minutes": 30}
    assert client.post("/v1/break-glass", json=body, headers=headers).status_code == 201
    params = {"patient": patient_id, "_count": "0"}
    assert _bundle(client.get("/fhir/Observation", params=params, headers=headers))["total"] > 0
    assert _reads(env, subject) == [("Observation", patient_id, "break_glass")]
