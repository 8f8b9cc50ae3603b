"""POST /v1/vitals: true contributions, NEWS2 of the measured signs and plausible per-sign effects.

Every property is checked through the API, on the served (tiny) model, as a client would see it.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from _api_env import Env, TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.triage import FEATURES, PLAUSIBLE_RANGES

GENERATED = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_CONTINUOUS = {
    name: st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 1))
    for name, (lo, hi, _unit) in PLAUSIBLE_RANGES.items()
}
_SIGNS: dict[str, st.SearchStrategy[Any]] = {
    **_CONTINUOUS,
    "on_oxygen": st.booleans(),
    "consciousness": st.sampled_from("ACVPU"),
}


def _post(client: TestClient, env: Env, signs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"patient": {"identifier": f"IPP-X-{uuid.uuid4().hex[:10]}"}, **signs, **extra}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    return response.json()


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(_SIGNS)), unique=True, max_size=len(_SIGNS)))
    signs = {name: draw(_SIGNS[name]) for name in names}
    if "systolic_bp" in signs and "diastolic_bp" in signs and signs["diastolic_bp"] >= signs["systolic_bp"]:
        del signs["diastolic_bp"]  # the API refuses a diastolic not below the systolic pressure
    if draw(st.booleans()):
        signs["spo2_scale"] = 2
    return signs


@GENERATED
@given(signs=_requests())
def test_unsent_signs_contribute_zero_and_the_sum_is_the_logit(
    client: TestClient, env: Env, signs: dict[str, Any]
) -> None:
    result = _post(client, env, signs)
    unsent = [name for name in FEATURES if name not in signs]
    assert result["missing"] == unsent
    for name in unsent:
        assert result["contributions"][name] == 0.0
    total = result["intercept"] + sum(result["contributions"].values())
    assert abs(total - result["logit"]) <= 1e-4
    news2 = result["news2"]
    assert set(news2["subscores"]) <= set(signs)
    assert news2["total"] == sum(news2["subscores"].values())
    assert news2["complete"] == (news2["missing"] == [])
    assert news2["red_score"] == any(points == 3 for points in news2["subscores"].values())


def test_the_issue_example_is_high_band_and_critical(client: TestClient, env: Env) -> None:
    # RR 30, SpO2 85 % on scale 1, HR 135, responds to voice, nothing else: each sign alone scores 3.
    result = _post(
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
    result = _post(client, env, {"consciousness": "V", "heart_rate": 80})
    assert result["news2"]["red_score"] and result["news2"]["band"] == "low-medium"
    assert result["priority"] in ("urgent", "critical")


def _valley(values: list[float]) -> bool:
    """Non-increasing down to a lowest point, then non-decreasing: monotone on each side of normal."""
    lowest = int(np.argmin(values))
    before, after = np.diff(values[: lowest + 1]), np.diff(values[lowest:])
    return bool(np.all(before <= 1e-6) and np.all(after >= -1e-6))


@pytest.mark.parametrize("sign", sorted(PLAUSIBLE_RANGES))
def test_each_sign_never_lowers_risk_further_from_normal(client: TestClient, env: Env, sign: str) -> None:
    lo, hi, _unit = PLAUSIBLE_RANGES[sign]
    grid = [round(float(v), 1) for v in np.linspace(lo, hi, 29)]
    results = [_post(client, env, {sign: value}) for value in grid]
    contributions = [r["contributions"][sign] for r in results]
    assert _valley(contributions), list(zip(grid, contributions, strict=True))
    assert _valley([r["risk"]["probability"] for r in results])
    assert max(contributions) > min(contributions)  # the sign matters somewhere in its range


def test_categorical_signs_never_lower_risk_away_from_normal(client: TestClient, env: Env) -> None:
    levels = [
        _post(client, env, {"consciousness": level})["contributions"]["consciousness"] for level in "ACVPU"
    ]
    assert levels[0] == 0.0 and all(b >= a for a, b in zip(levels, levels[1:], strict=False))
    air, oxygen = (
        _post(client, env, {"on_oxygen": flag})["contributions"]["on_oxygen"] for flag in (False, True)
    )
    assert air == 0.0 and oxygen >= air
