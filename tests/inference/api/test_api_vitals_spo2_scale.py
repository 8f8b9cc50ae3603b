"""SpO2 on NEWS2 Scale 2 (hypercapnic respiratory failure, target 88-92 %): NEWS2 scores it on Scale 2
and the triage model, which has no scale input and reads 88 % as alarming, is not given it.

The model's risk of such a patient is the one it gives without SpO2, and the result says why; a Scale 1
reading of the same saturation still moves the risk.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from _api_env import Env, TestClient

# NEWS2 0 apart from SpO2: RR 16, air, systolic 120, pulse 70, alert, 37.0 °C.
NORMAL: dict[str, Any] = {
    "respiratory_rate": 16,
    "on_oxygen": False,
    "systolic_bp": 120,
    "diastolic_bp": 75,
    "heart_rate": 70,
    "temperature": 37.0,
    "consciousness": "A",
}


def _triage(client: TestClient, env: Env, **vitals: Any) -> dict[str, Any]:
    body = {"patient": {"identifier": f"S2-{uuid.uuid4().hex[:10]}"}, **NORMAL, **vitals}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_copd_patient_at_target_is_not_alarming_to_the_model(client: TestClient, env: Env) -> None:
    on_target = _triage(client, env, spo2=88, spo2_scale=2)
    scale_1 = _triage(client, env, spo2=88)
    unmeasured = _triage(client, env)

    # NEWS2: 88 % is the target on Scale 2 (0 points), a red score on Scale 1.
    assert on_target["news2"]["subscores"]["spo2"] == 0 and on_target["news2"]["total"] == 0
    assert scale_1["news2"]["subscores"]["spo2"] == 3
    # The model was not given the Scale 2 saturation: its risk is the one without SpO2, which it says.
    assert on_target["contributions"]["spo2"] == 0.0 and "spo2" in on_target["missing"]
    assert on_target["risk"]["probability"] == pytest.approx(unmeasured["risk"]["probability"], abs=1e-6)
    assert scale_1["contributions"]["spo2"] > 0.0
    assert scale_1["risk"]["probability"] > on_target["risk"]["probability"]
    [said] = [w for w in on_target["warnings"] if w.startswith("spo2_withheld: ")]
    assert "Scale 2" in said and "without SpO2" in said
    # SpO2 was measured: it is not among the measurements the risk lacked.
    assert not any(w.startswith("The risk was estimated without") for w in on_target["warnings"])
    assert not any(w.startswith("spo2_withheld") for w in scale_1["warnings"])


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "points"),
    [(83, False, 3), (85, True, 2), (87, False, 1), (92, True, 0), (97, False, 0), (93, True, 1),
     (96, True, 2), (97, True, 3)],
)  # fmt: skip
def test_news2_scores_scale_2_by_the_rcp_chart(
    client: TestClient, env: Env, spo2: int, on_oxygen: bool, points: int
) -> None:
    result = _triage(client, env, spo2=spo2, spo2_scale=2, on_oxygen=on_oxygen)
    assert result["news2"]["subscores"]["spo2"] == points
    assert result["contributions"]["spo2"] == 0.0
