"""A new triage model version is not the patient deteriorating.

The trend's "risk crossed its threshold upwards" compares positivity over the patient's observations.
Scored by two versions with different thresholds, an unchanged patient went from negative (old version)
to positive (new version) the hour after a promotion: "deteriorating", a warning with a model-risk change
that compares two models, and a priority raised one level (here urgent -> critical) for every such
patient on the ward at once. Only observations scored by the version that scores this one count for the
model's part of the trend; NEWS2 is the same chart whatever the model.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tiny_models
from _api_env import Env, TestClient, make_settings

from inference.api import create_app

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
SIGNS: dict[str, Any] = {
    "respiratory_rate": 16,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 120,
    "diastolic_bp": 75,
    "heart_rate": 95,
    "temperature": 37.0,
    "consciousness": "A",
}


def _post(client: TestClient, env: Env, patient: str, at: datetime, **changes: Any) -> dict[str, Any]:
    body = {"patient": {"identifier": patient}, "observed_at": at.isoformat(), **SIGNS, **changes}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    return response.json()


def _promote(client: TestClient, settings: Any, build: Path, version: str, threshold: float) -> None:
    path = tiny_models.build_triage_onnx(build / f"triage-{version}.onnx", threshold=threshold)
    tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, path, version=version)
    client.portal.call(client.app.state.ctx.host.refresh)  # what the model watcher does


def test_a_stable_patient_is_not_deteriorating_because_a_new_model_version_has_a_lower_threshold(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    tiny_models.seed_both(settings.model_cache, build)
    env = Env(home=tmp_path, settings=settings)
    patient, steady = f"IPP-V-{uuid.uuid4().hex[:10]}", f"IPP-V-{uuid.uuid4().hex[:10]}"
    with TestClient(create_app(settings)) as client:
        _promote(client, settings, build, "2", threshold=0.999)  # nobody is positive
        before = _post(client, env, patient, START)
        _post(client, env, steady, START)
        assert before["risk"]["positive"] is False and before["model"]["version"] == "2"

        _promote(client, settings, build, "3", threshold=0.001)  # everybody is positive
        after = _post(client, env, patient, START + timedelta(hours=1))
        _post(client, env, steady, START + timedelta(hours=1))
        again = _post(client, env, steady, START + timedelta(hours=2), heart_rate=96)

    assert after["model"]["version"] == "3" and after["risk"]["positive"] is True
    assert after["news2"]["total"] == before["news2"]["total"]
    assert after["trend"]["deteriorating"] is False
    assert after["priority"] == "urgent"  # the model's positive risk, not raised again by a trend
    assert not any(w.startswith("Deteriorating") for w in after["warnings"])
    assert after["trend"]["risk_change"] == 0  # nothing earlier was scored by version 3
    # Observations the new version scored still make a trend of the model's risk.
    assert again["trend"]["observations"] == 3 and again["trend"]["deteriorating"] is False
