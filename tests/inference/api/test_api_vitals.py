"""POST /v1/vitals: NEWS2, model risk, contributions and the refusals of bad input."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from _api_env import Env, TestClient

from inference.services import SYNTHETIC_WARNING
from inference.triage import VitalSigns, compute_news2

FULL: dict[str, Any] = {
    "observed_at": "2026-11-22T08:15:00Z",
    "respiratory_rate": 22,
    "spo2": 93,
    "spo2_scale": 1,
    "on_oxygen": False,
    "systolic_bp": 105,
    "diastolic_bp": 70,
    "heart_rate": 112,
    "temperature": 38.4,
    "consciousness": "A",
}
VITALS = [k for k in FULL if k != "observed_at"]


def _body(**changes: Any) -> dict[str, Any]:
    patient = {
        "identifier": f"IPP-{uuid.uuid4().hex[:8]}",
        "name": "Vitalis^Ottoline",
        "birth_date": "1950-02-01",
        "sex": "female",
    }
    body = {"patient": patient, **FULL}
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _post(client: TestClient, env: Env, body: Any, **headers: str):
    return client.post("/v1/vitals", json=body, headers={**env.headers("clinician"), **headers})


def test_full_vitals_give_news2_risk_and_contributions(client: TestClient, env: Env) -> None:
    response = _post(client, env, _body())
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["kind"] == "triage"
    assert result["model"]["name"] == "vitals-triage"
    expected = compute_news2(VitalSigns.from_mapping(FULL))
    assert expected is not None
    assert result["news2"] == expected.as_dict()
    assert result["news2"]["complete"] is True and result["news2"]["missing"] == []
    assert result["missing"] == [] and result["trend"] is None
    assert set(result["news2"]["subscores"]) == {
        "respiratory_rate",
        "spo2",
        "on_oxygen",
        "systolic_bp",
        "heart_rate",
        "consciousness",
        "temperature",
    }
    assert set(result["risk"]) >= {"probability", "positive"}
    assert 0.0 <= result["risk"]["probability"] <= 1.0
    assert set(result["contributions"]) == {*VITALS} - {"spo2_scale"}
    assert math.isclose(
        result["intercept"] + sum(result["contributions"].values()), result["logit"], abs_tol=1e-4
    )
    # NEWS2 of 8 is "high", which the default policy ranks critical.
    assert expected.band == "high" and result["priority"] == "critical"
    assert SYNTHETIC_WARNING in result["warnings"]
    # The birth date in either spelling (the year alone can turn up among the digits of the random ids).
    assert "Vitalis" not in response.text
    assert "1950-02-01" not in response.text and "19500201" not in response.text


def test_one_missing_parameter_gives_the_known_part_and_a_warning(client: TestClient, env: Env) -> None:
    result = _post(client, env, _body(temperature=...)).json()
    expected = compute_news2(VitalSigns.from_mapping({**FULL, "temperature": None}))
    assert result["news2"] == expected.as_dict()
    assert result["news2"]["complete"] is False and result["news2"]["missing"] == ["temperature"]
    assert "temperature" not in result["news2"]["subscores"]
    assert any("NEWS2" in w and "temperature" in w for w in result["warnings"])
    assert result["contributions"]["temperature"] == 0.0 and result["missing"] == ["temperature"]


def test_rationale_follows_accept_language(client: TestClient, env: Env) -> None:
    arabic = _post(client, env, _body(), **{"Accept-Language": "ar"}).json()
    assert arabic["rationale_language"] == "ar"
    assert any("\u0600" <= ch <= "\u06ff" for ch in arabic["rationale"])


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"heart_rate": "112"}, 400, "invalid_field"),
        ({"on_oxygen": 1}, 400, "invalid_field"),
        ({"consciousness": "Z"}, 400, "invalid_field"),
        ({"spo2_scale": 3}, 400, "invalid_field"),
        ({"heartrate": 80}, 400, "invalid_field"),
        ({"observed_at": "2026-11-22T08:15:00"}, 400, "invalid_field"),
        ({"temperature": 98.6}, 422, "implausible_value"),
        ({"diastolic_bp": 120, "systolic_bp": 100}, 422, "inconsistent_values"),
    ],
)
def test_bad_values_are_refused(client: TestClient, env: Env, changes: dict, status: int, code: str) -> None:
    response = _post(client, env, _body(**changes))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("extra", [{}, {"spo2_scale": 2}], ids=["nothing", "only the SpO2 scale"])
def test_a_request_without_any_vital_sign_is_refused_and_files_nothing(
    client: TestClient, env: Env, extra: dict[str, Any]
) -> None:
    # Nothing measured is not a low risk: a "routine, 2 %" result filed from no data would read as one.
    body = _body(**dict.fromkeys(VITALS, ...))
    body.update(extra)
    response = _post(client, env, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "no_vital_signs"
    assert "heart_rate" in error["message"] and body["patient"]["identifier"] not in error["message"]
    found = client.get(
        "/fhir/Patient",
        params={"identifier": body["patient"]["identifier"]},
        headers=env.headers("clinician"),
    )
    assert found.status_code == 200 and found.json().get("total", 0) == 0
    # One measured sign is enough to score (the rest is reported missing).
    assert _post(client, env, {"patient": body["patient"], "heart_rate": 80}).status_code == 201


def test_patient_identifier_is_required(client: TestClient, env: Env) -> None:
    body = _body()
    del body["patient"]["identifier"]
    response = _post(client, env, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_field" and "patient.identifier" in error["message"]
    assert _post(client, env, {k: v for k, v in _body().items() if k != "patient"}).status_code == 400


def test_malformed_json_wrong_type_and_oversized_bodies(client: TestClient, env: Env) -> None:
    headers = env.headers("clinician")
    broken = client.post(
        "/v1/vitals", content=b'{"patient": ', headers={**headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed"
    as_form = client.post("/v1/vitals", data={"patient": "x"}, headers=headers)
    assert as_form.status_code == 415
    array = client.post("/v1/vitals", json=[1, 2], headers=headers)
    assert array.status_code == 400
    huge = _body()
    huge["patient"]["name"] = "x" * (env.settings.limits.max_json_bytes + 10)
    too_large = client.post("/v1/vitals", json=huge, headers=headers)
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"


def test_error_messages_never_echo_the_input(client: TestClient, env: Env) -> None:
    response = _post(client, env, _body(heart_rate="IPP-SECRET-991"))
    assert response.status_code == 400
    assert "IPP-SECRET-991" not in response.text
