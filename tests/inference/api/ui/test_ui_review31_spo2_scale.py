"""The viewer of a patient whose SpO2 is charted on NEWS2 Scale 2: the saturation was measured.

The triage model is not given a Scale 2 saturation (it knows Scale 1 only), so the result lists ``spo2``
among the model's ``missing`` inputs; the viewer read that list as the signs not measured and told the
clinician "Not measured: oxygen saturation. The score is a lower bound." above the 88 % it showed, of a
NEWS2 that was complete.
"""

from __future__ import annotations

import uuid

from _ui_live import Env, TestClient, add_account, sign_in  # noqa: I001


def test_a_scale_2_saturation_is_not_shown_as_unmeasured(client: TestClient, env: Env) -> None:
    body = {
        "patient": {"identifier": f"V-{uuid.uuid4().hex[:8]}"},
        "respiratory_rate": 16, "spo2": 88, "spo2_scale": 2, "on_oxygen": False, "systolic_bp": 120,
        "diastolic_bp": 75, "heart_rate": 70, "temperature": 37.0, "consciousness": "A",
    }  # fmt: skip
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["news2"]["complete"] and "spo2" in result["missing"]  # withheld from the model only
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    page = client.get(f"/ui/results/{result['result_id']}", params={"lang": "en"}).text
    assert "Not measured" not in page and "lower bound" not in page
