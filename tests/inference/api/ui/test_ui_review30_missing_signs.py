"""The viewer of vital signs names the signs that were not measured in the reader's language, as it
names the measured ones, not by the API's field names (``respiratory_rate``, ``spo2``)."""

from __future__ import annotations

import uuid

import pytest
from _ui_live import Env, TestClient, add_account, sign_in  # noqa: I001


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "Not measured: oxygen saturation and temperature. The score is a lower bound."),
        ("fr", "Non mesuré\u00a0: saturation en oxygène et température. Le score est une borne inférieure."),
    ],
)
def test_unmeasured_signs_are_named_in_the_page_language(
    client: TestClient, env: Env, lang: str, expected: str
) -> None:
    body = {
        "patient": {"identifier": f"V-{uuid.uuid4().hex[:8]}"},
        "respiratory_rate": 24, "on_oxygen": False, "systolic_bp": 105, "diastolic_bp": 70,
        "heart_rate": 112, "consciousness": "A",
    }  # fmt: skip
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    result = response.json()
    assert set(result["news2"]["missing"]) == {"spo2", "temperature"}
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    page = client.get(f"/ui/results/{result['result_id']}", params={"lang": lang}).text
    assert expected in page
