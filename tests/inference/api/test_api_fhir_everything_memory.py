"""``GET /fhir/Patient/{id}/$everything`` on a patient with a long record (an ICU stay files vital signs
many times a day): ``total`` counts every row, but the server holds only a bounded batch of the patient's
results at a time, never the whole record."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import tiny_models
from _api_env import Env, TestClient, make_settings
from sqlalchemy import event
from test_api_fhir_everything import _bundle

from inference.record._models import Result

RESULTS = 500


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The shared test home, with a rate limit above the RESULTS uploads of one clinician (the default
    burst of 300 refused the rest with 429)."""
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home, rate_limit_burst=2 * RESULTS, rate_limit_per_minute=60 * RESULTS)
        tiny_models.seed_both(settings.model_cache, home / "build")
        yield Env(home=home, settings=settings)


@pytest.fixture
def held() -> Iterator[list[int]]:
    """The most results of the record held in memory at once while loading (sampled every 25 loads,
    after a garbage collection, so only rows still referenced count)."""
    peak = [0]
    loads = [0]

    def loaded(target: Result, context: Any) -> None:
        loads[0] += 1
        if loads[0] % 25 == 0:
            gc.collect()
            alive = sum(isinstance(o, Result) for o in context.session.identity_map.values())
            peak[0] = max(peak[0], alive)

    event.listen(Result, "load", loaded)
    try:
        yield peak
    finally:
        event.remove(Result, "load", loaded)


def test_a_long_record_is_walked_in_batches_not_held_whole(
    client: TestClient, env: Env, held: list[int]
) -> None:
    identifier = f"ICU-{uuid.uuid4().hex[:10]}"
    headers = env.headers("clinician")
    patient_id = ""
    for beat in range(RESULTS):
        body = {
            "patient": {"identifier": identifier},
            "respiratory_rate": 14 + beat % 10,
            "spo2": 95,
            "heart_rate": 60 + beat // 10,  # each beat another reading (a resend would be answered)
        }
        response = client.post("/v1/vitals", json=body, headers=headers)
        assert response.status_code == 201, response.text
        patient_id = str(response.json()["patient"]["id"])
    page = _bundle(
        client.get(
            f"/fhir/Patient/{patient_id}/$everything",
            params={"_type": "RiskAssessment", "_count": "5", "_offset": "450"},
            headers=headers,
        )
    )
    assert page["total"] == RESULTS and [e["search"]["mode"] for e in page["entry"]] == ["match"] * 5 + [
        "include"  # the model's Device the assessments reference
    ]
    # Every result was read to count them, at most two batches of a hundred at a time (the one being read
    # and the one before it), not the whole record.
    assert 0 < held[0] <= 250, held[0]
