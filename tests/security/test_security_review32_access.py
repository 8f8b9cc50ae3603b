"""Review 32 of the HTTP API, as a hospital's security officer attacking it: one rule for the characters a
request value may hold, whether it comes as a JSON field, a query or path parameter (FHIR's included);
and what an answer about an audit entry tells to a caller who may not read it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from _security_env import Env, TestClient, seeded_env

from inference.api import create_app
from inference.record import Record


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-review32")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        yield seeded_env(home, facility_issuers={"F1": "CHU-NORD"})


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _events(env: Env, **filters: object) -> list[dict]:
    record = Record(env.settings.record_url)
    try:
        return record.audit.search(limit=500, **filters)[1]
    finally:
        record.close()


def _vitals(identifier: str, **patient: str) -> dict:
    return {"patient": {"identifier": identifier, **patient}, "respiratory_rate": 18, "spo2": 97}


# NEL (a line break to log readers), CSI (a terminal escape), a line separator, a right-to-left override.
HIDDEN = {"NEL": "\u0085", "CSI": "\u009b", "LS": "\u2028", "RLO": "\u202e", "tab": "\t"}


@pytest.mark.parametrize("hidden", list(HIDDEN))
@pytest.mark.parametrize(
    ("path", "parameter", "role"),
    [
        ("/fhir/Patient?identifier=IPP-1{}X", "identifier", "admin"),
        ("/fhir/Observation?patient={}", "patient", "admin"),
        ("/fhir/AuditEvent?agent=dr{}x", "agent", "auditor"),
        ("/fhir/AuditEvent?date=ge2026-01-01{}", "date", "auditor"),
        # A parameter FHIR ignores (lenient handling) is still no place for them.
        ("/fhir/Patient?note=a{}b", "note", "admin"),
        # Path parameters, on the routes where an id reaches the record.
        ("/fhir/Patient/abc{}", "resource_id", "admin"),
        ("/fhir/Patient/abc{}/$everything", "patient_id", "admin"),
        ("/fhir/AuditEvent/1{}", "event_id", "auditor"),
    ],
)
def test_fhir_parameters_refuse_what_json_fields_refuse_naming_the_parameter(
    client: TestClient, env: Env, path: str, parameter: str, role: str, hidden: str
) -> None:
    # The C0 controls were refused (400, the parameter named); the C1 controls, the line separator and
    # the bidi overrides were searched for (200) or refused as a mismatched pattern (400).
    before = len(_events(env))
    answer = client.get(path.format(quote(HIDDEN[hidden])), headers=env.headers(role))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    [issue] = answer.json()["issue"]
    assert issue["details"]["coding"][0]["code"] == "invalid_characters"
    assert f"parameter '{parameter}'" in issue["diagnostics"]
    assert "IPP-1" not in issue["diagnostics"]
    # Refused before the search or the read: the trail holds no query of it.
    assert len(_events(env)) == before


@pytest.mark.parametrize(
    ("path", "parameter", "place"),
    [
        ("/v1/worklist?limit=5{}", "limit", "Query"),
        ("/v1/break-glass?active={}true", "active", "Query"),
        ("/v1/results/{}", "result_id", "Path"),
        ("/v1/studies/1.2.3{}/result", "study_instance_uid", "Path"),
    ],
)
def test_api_parameters_refuse_them_in_the_contract_s_error_shape(
    client: TestClient, env: Env, path: str, parameter: str, place: str
) -> None:
    for hidden in ("\u0085", "\u202e", "\x01"):
        answer = client.get(path.format(quote(hidden)), headers=env.headers("admin"))
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_characters"
        assert f"{place} parameter '{parameter}'" in error["message"]


def test_a_parameter_named_with_a_hidden_character_is_refused_without_echoing_its_name(
    client: TestClient, env: Env
) -> None:
    answer = client.get("/fhir/Patient?" + quote("iden\u202etifier") + "=x", headers=env.headers("admin"))
    assert answer.status_code == 422, answer.text
    assert "(unprintable name)" in answer.json()["issue"][0]["diagnostics"]
    assert "\u202e" not in answer.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_vitals("IPP\u0000X"), "patient.identifier"),
        (_vitals("IPP-C0-NAME", name="DUPONT\u001b[31mJEAN"), "patient.name"),
        (_vitals("IPP-C0-DEL", issuer="CHU\u007fNORD"), "patient.issuer"),
        (
            {"patient": {"identifier": "IPP-C0-KEY"}, "respiratory_rate": 18, "spo2\u0007": 97},
            "(unprintable name)",
        ),
    ],
)
def test_a_c0_control_in_a_json_body_is_refused_like_a_c1_control_naming_the_field(
    client: TestClient, env: Env, body: dict, field: str
) -> None:
    # A C0 control was a 400 at parse with no field named, where a C1 control was a 422 naming it.
    refused = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_characters"
    assert f"Field '{field}'" in error["message"]
    assert "DUPONT" not in error["message"] and "IPP" not in error["message"]
    c1 = client.post(
        "/v1/vitals", json=_vitals("IPP\u0085X"), headers=env.headers("clinician", facility="F1")
    )
    assert c1.status_code == refused.status_code
    assert c1.json()["error"]["code"] == error["code"]


def test_a_c0_control_in_a_list_item_names_its_position(client: TestClient, env: Env) -> None:
    answer = client.post(
        f"/v1/results/{uuid.uuid4()}/feedback",
        json={
            "verdicts": [{"code": "effusion", "verdict": "agree"}, {"code": "x\u0000", "verdict": "agree"}]
        },
        headers=env.headers("radiologist", facility="F1"),
    )
    assert answer.status_code == 422, answer.text
    assert "Field 'verdicts.1.code'" in answer.json()["error"]["message"]


def test_an_audit_entry_outside_the_auditor_s_part_is_answered_as_one_that_does_not_exist(
    client: TestClient, env: Env
) -> None:
    # An F1 clinician's access: an entry of F1's part of the trail.
    nurse = f"nurse-{uuid.uuid4().hex[:6]}"
    filed = client.post(
        "/v1/vitals",
        json=_vitals(f"IPP-{uuid.uuid4().hex[:10]}"),
        headers=env.headers("clinician", facility="F1", subject=nurse),
    )
    assert filed.status_code == 201, filed.text
    [entry] = [e for e in _events(env, agent=nurse) if e["action"] == "vitals:submit"]
    theirs, nothing = str(entry["seq"]), str(entry["seq"] + 10**9)
    # F2's auditor probes ids: a 403 where an unused id got 404 told it which of F1's entries exist.
    prober = f"auditor-f2-{uuid.uuid4().hex[:6]}"
    f2 = env.headers("auditor", facility="F2", subject=prober)
    hidden = client.get(f"/fhir/AuditEvent/{theirs}", headers=f2)
    unknown = client.get(f"/fhir/AuditEvent/{nothing}", headers=f2)
    assert hidden.status_code == unknown.status_code == 404, hidden.text
    assert hidden.json() == unknown.json()
    assert hidden.headers["content-type"] == unknown.headers["content-type"]
    assert hidden.json()["resourceType"] == "OperationOutcome"
    # The trail tells the officer which probe hit another facility's entry.
    outcomes = {(e["resource_id"], e["outcome"]) for e in _events(env, agent=prober)}
    assert outcomes == {(theirs, "denied"), (nothing, "not_found")}
    # F1's auditor reads it.
    assert (
        client.get(f"/fhir/AuditEvent/{theirs}", headers=env.headers("auditor", facility="F1")).status_code
        == 200
    )


@pytest.mark.parametrize("key", ["x\u202ey", "n\u0085ame", "k" * 500])
def test_an_unknown_key_holding_hidden_characters_is_refused_without_echoing_it(
    client: TestClient, env: Env, key: str
) -> None:
    # A key the API does not take was quoted in the refusal: a right-to-left override or a line break a
    # caller chose went into the answer (and to whatever shows or logs it), a long one whole.
    body = {"patient": {"identifier": "IPP-KEY", key: "x"}, "respiratory_rate": 18, "spo2": 97}
    refused = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    error = refused.json()["error"]
    if len(key) > 100:
        assert (refused.status_code, error["code"]) == (400, "invalid_field"), refused.text
        assert "Field 'patient.(unprintable name)' is not accepted" in error["message"]
    else:  # refused by the JSON parser, as any string holding them, before the schema sees the key
        assert (refused.status_code, error["code"]) == (422, "invalid_characters"), refused.text
        assert "Field 'patient.(unprintable name)' holds" in error["message"]
    assert key not in error["message"]
