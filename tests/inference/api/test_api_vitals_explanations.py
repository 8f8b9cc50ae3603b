"""POST /v1/vitals: true contributions, NEWS2 of the measured signs and plausible per-sign effects.

Every property is checked through the API, on the served (tiny) model, as a client would see it;
``test_api_vitals_trained.py`` checks the same on a model trained by the pipeline.
"""

from __future__ import annotations

from typing import Any

import pytest
from _api_env import Env, TestClient
from _vitals_props import (
    GENERATED,
    check_categorical_monotone,
    check_request,
    check_sign_monotone,
    post,
    requests,
)
from hypothesis import given

from inference.triage import PLAUSIBLE_RANGES


@GENERATED
@given(signs=requests())
def test_unsent_signs_contribute_zero_and_the_sum_is_the_logit(
    client: TestClient, env: Env, signs: dict[str, Any]
) -> None:
    check_request(client, env, signs)


def test_the_issue_example_is_high_band_and_critical(client: TestClient, env: Env) -> None:
    # RR 30, SpO2 85 % on scale 1, HR 135, responds to voice, nothing else: each sign alone scores 3.
    result = post(
        client,
        env,
        {"respiratory_rate": 30, "spo2": 85, "spo2_scale": 1, "heart_rate": 135, "consciousness": "V"},
    )
    news2 = result["news2"]
    assert news2["total"] >= 12 and news2["complete"] is False and news2["band"] == "high"
    assert news2["red_score"] is True
    assert news2["missing"] == ["on_oxygen", "systolic_bp", "temperature"]
    assert result["priority"] == "critical"
    for name in ("systolic_bp", "temperature", "diastolic_bp", "on_oxygen"):
        assert result["contributions"][name] == 0.0
    assert any("lower bound" in w for w in result["warnings"])


def test_a_single_red_score_is_at_least_urgent(client: TestClient, env: Env) -> None:
    result = post(client, env, {"consciousness": "V", "heart_rate": 80})
    assert result["news2"]["red_score"] and result["news2"]["band"] == "low-medium"
    assert result["priority"] in ("urgent", "critical")


@pytest.mark.parametrize("sign", sorted(PLAUSIBLE_RANGES))
def test_each_sign_never_lowers_risk_further_from_normal(client: TestClient, env: Env, sign: str) -> None:
    check_sign_monotone(client, env, sign)


def test_categorical_signs_never_lower_risk_away_from_normal(client: TestClient, env: Env) -> None:
    check_categorical_monotone(client, env)
