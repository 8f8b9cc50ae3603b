"""Properties of POST /v1/vitals shared by the tests on the tiny model and on a trained one."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from _api_env import Env, TestClient
from hypothesis import HealthCheck, settings
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


def post(client: TestClient, env: Env, signs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"patient": {"identifier": f"IPP-X-{uuid.uuid4().hex[:10]}"}, **signs, **extra}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    return response.json()


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(_SIGNS)), unique=True, min_size=1, max_size=len(_SIGNS)))
    signs = {name: draw(_SIGNS[name]) for name in names}
    if "systolic_bp" in signs and "diastolic_bp" in signs and signs["diastolic_bp"] >= signs["systolic_bp"]:
        del signs["diastolic_bp"]  # the API refuses a diastolic not below the systolic pressure
    if draw(st.booleans()):
        signs["spo2_scale"] = 2
    return signs


def check_request(client: TestClient, env: Env, signs: dict[str, Any]) -> None:
    """Unsent signs (and SpO2 on Scale 2, withheld from the model) contribute exactly 0 and are listed;
    intercept + contributions = logit; NEWS2 adds up."""
    result = post(client, env, signs)
    withheld = {"spo2"} if signs.get("spo2_scale") == 2 else set()
    unsent = [name for name in FEATURES if name not in signs or name in withheld]
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


def valley(values: list[float]) -> bool:
    """Non-increasing down to a lowest point, then non-decreasing: monotone on each side of normal."""
    lowest = int(np.argmin(values))
    before, after = np.diff(values[: lowest + 1]), np.diff(values[lowest:])
    return bool(np.all(before <= 1e-6) and np.all(after >= -1e-6))


def check_sign_monotone(client: TestClient, env: Env, sign: str) -> None:
    """Over the sign's accepted range, alone: contribution and risk fall to a normal point, then rise."""
    lo, hi, _unit = PLAUSIBLE_RANGES[sign]
    grid = [round(float(v), 1) for v in np.linspace(lo, hi, 29)]
    results = [post(client, env, {sign: value}) for value in grid]
    contributions = [r["contributions"][sign] for r in results]
    assert valley(contributions), list(zip(grid, contributions, strict=True))
    assert valley([r["risk"]["probability"] for r in results])
    assert max(contributions) > min(contributions)  # the sign matters somewhere in its range


def check_categorical_monotone(client: TestClient, env: Env) -> None:
    """ACVPU never lowers the risk as it worsens; oxygen never lowers it compared with air."""
    levels = [
        post(client, env, {"consciousness": level})["contributions"]["consciousness"] for level in "ACVPU"
    ]
    assert levels[0] == 0.0 and all(b >= a for a, b in zip(levels, levels[1:], strict=False))
    air, oxygen = (
        post(client, env, {"on_oxygen": flag})["contributions"]["on_oxygen"] for flag in (False, True)
    )
    assert air == 0.0 and oxygen >= air
