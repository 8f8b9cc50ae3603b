"""A patient's series: each triage result carries the trend of the observations before it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from _api_env import Env, TestClient

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
NORMAL: dict[str, Any] = {
    "respiratory_rate": 16,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 120,
    "diastolic_bp": 75,
    "heart_rate": 70,
    "temperature": 37.0,
    "consciousness": "A",
}
# NEWS2 1 -> 3 -> 4 -> 5: pulse 95 (1), then respiratory rate 22 (2), pulse 115 (2), temperature 38.5 (1).
RISING = [
    {"heart_rate": 95},
    {"heart_rate": 95, "respiratory_rate": 22},
    {"heart_rate": 115, "respiratory_rate": 22},
    {"heart_rate": 115, "respiratory_rate": 22, "temperature": 38.5},
]
STABLE = [{"heart_rate": 95}, {"heart_rate": 93}, {"heart_rate": 96}, {"heart_rate": 94}]


def _patient() -> dict[str, str]:
    return {"identifier": f"IPP-T-{uuid.uuid4().hex[:10]}"}


def _post(
    client: TestClient, env: Env, patient: dict[str, str], at: datetime, **changes: Any
) -> dict[str, Any]:
    body = {"patient": patient, "observed_at": at.isoformat(), **NORMAL, **changes}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    return response.json()


def _series(client: TestClient, env: Env, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    patient = _patient()
    return [
        _post(client, env, patient, START + timedelta(hours=2 * i), **step) for i, step in enumerate(steps)
    ]


def test_a_rising_news2_is_deteriorating_and_raises_the_priority(client: TestClient, env: Env) -> None:
    results = _series(client, env, RISING)
    assert [r["news2"]["total"] for r in results] == [1, 3, 4, 5]
    assert results[0]["trend"] is None
    last = results[-1]
    assert last["trend"] == {
        "observations": 4,
        "hours": 6.0,
        "news2_change": 4,
        "risk_change": last["trend"]["risk_change"],
        "deteriorating": True,
    }
    assert last["trend"]["risk_change"] > 0
    # The same vitals as a first observation: NEWS2 5 is "medium", urgent by the default policy.
    alone = _post(client, env, _patient(), START, **RISING[-1])
    assert alone["trend"] is None and alone["priority"] == "urgent"
    assert last["priority"] == "critical"  # raised one level by the deteriorating trend
    assert any(w.startswith("Deteriorating over 6 h (4 observations)") for w in last["warnings"])
    assert "observations over the last 6 h show deterioration" in last["rationale"]


def test_a_stable_series_is_not_deteriorating(client: TestClient, env: Env) -> None:
    results = _series(client, env, STABLE)
    assert [r["news2"]["total"] for r in results] == [1, 1, 1, 1]
    assert results[0]["trend"] is None
    for i, result in enumerate(results[1:], start=2):
        trend = result["trend"]
        assert trend["observations"] == i and trend["hours"] == 2.0 * (i - 1)
        assert trend["news2_change"] == 0 and trend["deteriorating"] is False
        assert result["priority"] == "routine"


def test_observations_outside_the_window_do_not_count(client: TestClient, env: Env) -> None:
    patient = _patient()
    _post(client, env, patient, START, heart_rate=95)
    later = _post(client, env, patient, START + timedelta(hours=25), **RISING[-1])
    assert later["trend"] is None  # the default window is 24 h
    # A late-filed observation is compared with what preceded it, not with what was filed before it.
    earlier = _post(client, env, patient, START + timedelta(hours=20), heart_rate=70)
    assert earlier["trend"]["observations"] == 2 and earlier["trend"]["news2_change"] == -1


def test_an_incomplete_earlier_score_is_not_a_baseline(client: TestClient, env: Env) -> None:
    patient = _patient()
    # Only the pulse measured: NEWS2 known part 0, a lower bound that may hide a higher true score.
    first = client.post(
        "/v1/vitals",
        json={"patient": patient, "observed_at": START.isoformat(), "heart_rate": 70},
        headers=env.headers("clinician"),
    ).json()
    assert first["news2"]["complete"] is False
    second = _post(client, env, patient, START + timedelta(hours=1), heart_rate=95, respiratory_rate=22)
    assert second["trend"]["news2_change"] == 3 and second["trend"]["deteriorating"] is False


def test_the_worklist_shows_the_trend(client: TestClient, env: Env) -> None:
    last = _series(client, env, RISING)[-1]
    response = client.get("/v1/worklist", params={"limit": 500}, headers=env.headers("radiologist"))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    item = next(i for i in items if i["result_id"] == last["result_id"])
    assert item["trend"] == last["trend"] and item["trend"]["deteriorating"] is True
    assert item["news2"] == {"total": 5, "band": "medium", "complete": True}


def test_the_series_reads_as_fhir_vital_sign_observations_by_date(client: TestClient, env: Env) -> None:
    results = _series(client, env, RISING)  # 06:00, 08:00, 10:00, 12:00 UTC on 2026-11-20
    patient_id = results[0]["patient"]["id"]
    headers = env.headers("clinician")

    def search(*dates: str) -> list[dict[str, Any]]:
        query = [("patient", patient_id), ("category", "vital-signs"), *(("date", d) for d in dates)]
        response = client.get("/fhir/Observation", params=query, headers=headers)
        assert response.status_code == 200, response.text
        return [entry["resource"] for entry in response.json().get("entry", [])]

    whole_day = search("2026-11-20")
    assert len(whole_day) == 4 * 7  # rr, spo2, bp (systolic + diastolic), hr, temp, acvpu, o2
    assert all(o["category"][0]["coding"][0]["code"] == "vital-signs" for o in whole_day)
    window = search("ge2026-11-20T07:00:00Z", "lt2026-11-20T11:00:00Z")
    assert sorted({o["effectiveDateTime"] for o in window}) == [
        "2026-11-20T08:00:00.000Z",
        "2026-11-20T10:00:00.000Z",
    ]
    heart_rates = [o for o in search("gt2026-11-20T10:00:00Z") if o["code"]["coding"][0]["code"] == "8867-4"]
    assert [o["valueQuantity"]["value"] for o in heart_rates] == [115]
    assert search("2026-11-21") == []
    bad = client.get("/fhir/Observation", params={"date": "yesterday"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_the_fhir_risk_assessment_names_an_incomplete_news2_as_a_lower_bound(
    client: TestClient, env: Env
) -> None:
    body = {
        "patient": _patient(),
        "respiratory_rate": 30,
        "spo2": 85,
        "heart_rate": 135,
        "consciousness": "V",
    }
    result = client.post("/v1/vitals", json=body, headers=env.headers("clinician")).json()
    risk = client.get(f"/fhir/RiskAssessment/{result['result_id']}", headers=env.headers("clinician")).json()
    news2 = next(p for p in risk["prediction"] if p["outcome"]["coding"][0]["code"] == "deterioration-news2")
    assert news2["rationale"] == (
        "NEWS2 of the measured signs: at least 12, band at least high (RCP 2017); not measured: on_oxygen, "
        "systolic_bp, temperature."
    )


def test_one_reading_sent_by_two_senders_counts_once(client: TestClient, env: Env) -> None:
    """A monitor's gateway and a nurse's app both send the 06:00 reading: the ward sees one observation
    (one result: the second sender is answered with the first's, test_api_vitals_same_reading.py)."""
    patient = _patient()
    body = {"patient": patient, "observed_at": START.isoformat(), **NORMAL, "heart_rate": 95}
    answers = [
        client.post("/v1/vitals", json=body, headers=env.headers("clinician", subject=sender))
        for sender in ("monitor-gateway", "nurse-app")
    ]
    assert [a.status_code for a in answers] == [201, 200], answers[-1].text
    assert answers[1].json()["result_id"] == answers[0].json()["result_id"]
    # A different reading at the same time is another observation, and still counts.
    _post(client, env, patient, START + timedelta(hours=1), heart_rate=96)
    again = {**body, "observed_at": (START + timedelta(hours=1)).isoformat(), "heart_rate": 93}
    assert client.post("/v1/vitals", json=again, headers=env.headers("clinician")).status_code == 201

    later = _post(client, env, patient, START + timedelta(hours=4), **RISING[-1])
    assert later["trend"]["observations"] == 4  # 06:00 once, the two 07:00 readings, and this one
    assert later["trend"]["hours"] == 4.0 and later["trend"]["news2_change"] == 4
    assert any(w.startswith("Deteriorating over 4 h (4 observations)") for w in later["warnings"])
