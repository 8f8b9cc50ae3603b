"""Bad input never yields a 500: random bodies against the parsers and the JSON and upload routes."""

from __future__ import annotations

import json

import pytest
from _api_env import Env, TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.api._errors import MalformedRequest
from inference.api._multipart import parse_related

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
VITAL_KEYS = [
    "respiratory_rate",
    "spo2",
    "spo2_scale",
    "on_oxygen",
    "systolic_bp",
    "diastolic_bp",
    "heart_rate",
    "temperature",
    "consciousness",
    "observed_at",
    "patient",
]


@given(body=st.binary(max_size=400), boundary=st.text(min_size=1, max_size=12, alphabet="abcXYZ0-_"))
@FUZZ
def test_related_parser_only_raises_its_own_errors(body: bytes, boundary: str) -> None:
    prefixed = f"--{boundary}\r\n".encode() + body
    for candidate in (body, prefixed, prefixed + f"\r\n--{boundary}--".encode()):
        try:
            parts = parse_related(candidate, boundary, max_parts=4)
        except MalformedRequest:
            continue
        except ValueError as e:
            assert "more than" in str(e)
            continue
        assert all(0 <= p.start <= p.end <= len(candidate) for p in parts)


@given(data=st.dictionaries(st.sampled_from(VITAL_KEYS), json_values, max_size=6))
@FUZZ
def test_vitals_answers_4xx_or_201_to_any_json(client: TestClient, env: Env, data: dict) -> None:
    response = client.post(
        "/v1/vitals",
        content=json.dumps(data),
        headers={**env.headers("clinician"), "Content-Type": "application/json"},
    )
    assert response.status_code in {201, 400, 413, 422}, response.text
    if response.status_code != 201:
        assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("size", [0, 1, 131, 132, 200, 4096])
def test_uploads_of_junk_are_4xx(client: TestClient, env: Env, size: int) -> None:
    junk = (b"\x00" * 128 + b"DICM" + b"\xff" * 5000)[:size]
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", junk, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert 400 <= response.status_code < 500, response.text
