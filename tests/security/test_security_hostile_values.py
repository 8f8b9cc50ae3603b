"""Hostile values, as an attacker would send them: every one refused with its own 4xx code, never a 500.

The inputs of issue 9 ("Why") and more: non-finite and absurd DICOM rescale and window values, blank and
one-pixel images, JSON nested 30 000 deep on every JSON route, dates that overflow when converted to
UTC, one study under two patients. Each goes over HTTP upload and STOW-RS; afterwards the server is
still ready.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _hostile_inputs import REFUSED, chest, with_pixels
from _security_env import Env, TestClient, chest_dicom, new_study_uid, related_body, seeded_env

from inference.api import create_app

DEEP_JSON = b"[" * 30000 + b"]" * 30000  # 60 KB: under the 64 KiB JSON limit


def _server_errors(client: TestClient) -> float:
    """5xx answers counted so far by the server's own metrics (``dxassist_requests_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "dxassist_requests_total" and sample.labels.get("status", "").startswith("5"):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Env]]:
    env = seeded_env(tmp_path_factory.mktemp("hostile-values"))
    # raise_server_exceptions=False: a 500 must show up as a 500 answer, as a real client would see it.
    with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
        client.app.state.errors_before = _server_errors(client)
        yield client, env


@pytest.mark.parametrize("name", list(REFUSED))
def test_implausible_images_are_refused_over_upload_and_stow(
    served: tuple[TestClient, Env], name: str
) -> None:
    client, env = served
    build, status, code = REFUSED[name]
    headers = env.headers("pacs", facility="F1")
    study = new_study_uid()
    blob = build(study)
    upload = client.post(
        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
    )
    assert (upload.status_code, upload.json()["error"]["code"]) == (status, code), upload.text
    body, content_type = related_body([("application/dicom", blob)])
    stow = client.post("/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type})
    assert stow.status_code == 409, stow.text
    [failed] = stow.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900 if status == 422 else 0xC000]
    assert failed["00081155"]["Value"] == [f"{study}.1"]  # the sender learns which instance failed
    assert client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).status_code == 404


def _json_routes() -> list[tuple[str, str, str]]:
    """``(method, path template, a role allowed)`` of every route that reads a JSON body (deps.json_body)."""
    from fastapi.routing import iter_route_contexts

    from inference.api.deps import route_permission
    from inference.security import PERMISSIONS

    found = []
    for route in iter_route_contexts(create_app().routes):
        pending = list(getattr(getattr(route, "dependant", None), "dependencies", []))
        while pending:
            dependant = pending.pop()
            if getattr(dependant.call, "json_model", None) is not None:
                permission = route_permission(route)
                role = sorted(r.value for r in PERMISSIONS[permission])[0] if permission else "admin"
                found += [(method, route.path, role) for method in sorted(route.methods - {"HEAD"})]
                break
            pending.extend(dependant.dependencies)
    return found


JSON_ROUTES = _json_routes()
_PATH_VALUES: dict[str, Callable[[], str]] = {
    "result_id": lambda: str(uuid.uuid4()),
    "patient_id": lambda: str(uuid.uuid4()),
    "study_instance_uid": new_study_uid,
}


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _PATH_VALUES[m.group(1)](), path)


def test_every_json_route_is_covered() -> None:
    paths = {path for _method, path, _role in JSON_ROUTES}
    assert {"/v1/vitals", "/v1/results/{result_id}/feedback", "/v1/consents"} <= paths
    assert ("PUT", "/v1/patients/{patient_id}/consent") in {(m, p) for m, p, _r in JSON_ROUTES}


HOSTILE_JSON: dict[str, tuple[bytes, str]] = {
    "array nested 30 000 deep": (DEEP_JSON, "json_too_deep"),
    "object nested 10 000 deep": (b'{"a":' * 10000 + b"1" + b"}" * 10000, "json_too_deep"),
    "unterminated nesting": (b"[{" * 20000, "json_too_deep"),
    "NaN literal": (b'{"patient": {"identifier": "X"}, "heart_rate": NaN}', "invalid_json_number"),
    "number overflowing a double": (
        b'{"patient": {"identifier": "X"}, "spo2": 1e999}',
        "invalid_json_number",
    ),
    "duplicate key": (b'{"ai_processing": "permit", "ai_processing": "deny"}', "duplicate_json_key"),
    "UTF-16 body": ('{"patient": {"identifier": "X"}}'.encode("utf-16"), "malformed"),
}


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_hostile_json_is_refused_on_every_json_route(
    served: tuple[TestClient, Env], route: tuple[str, str, str], name: str
) -> None:
    client, env = served
    method, path, role = route
    raw, code = HOSTILE_JSON[name]
    response = client.request(
        method,
        _concrete(path),
        content=raw,
        headers={**env.headers(role), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_a_nul_in_a_json_string_is_refused_422_naming_the_field_on_every_json_route(
    served: tuple[TestClient, Env], route: tuple[str, str, str]
) -> None:
    client, env = served
    method, path, role = route
    response = client.request(
        method,
        _concrete(path),
        content=b'{"patient": {"identifier": "IPP\\u0000X"}}',
        headers={**env.headers(role), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_characters"
    assert "'patient.identifier'" in response.json()["error"]["message"]


# Characters the schemas refused only in the fields annotated Line/Text: refused by the JSON parser in every
# string now, a field declared without the annotation (or no field at all) included.
HIDDEN_CHARACTERS = {"NEL (C1)": "\u0085", "CSI (C1)": "\u009b", "RLO": "\u202e", "RLI": "\u2067"}


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("name", list(HIDDEN_CHARACTERS))
def test_a_hidden_character_in_a_field_without_text_rules_is_refused_422_on_every_json_route(
    served: tuple[TestClient, Env], route: tuple[str, str, str], name: str
) -> None:
    client, env = served
    method, path, role = route
    hidden = HIDDEN_CHARACTERS[name]
    for body, field in (
        ({"note": f"a{hidden}b"}, "'note'"),  # a field no request model declares
        ({f"note{hidden}": "x"}, "'(unprintable name)'"),  # in a key
    ):
        response = client.request(
            method,
            _concrete(path),
            json=body,
            headers={**env.headers(role), "Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_characters", response.text
        assert field in response.json()["error"]["message"]


def test_a_hidden_character_in_a_choice_is_refused_422_naming_the_field(
    served: tuple[TestClient, Env],
) -> None:
    """``verdict`` is a choice of three words, declared without the Line annotation."""
    client, env = served
    body = {"verdicts": [{"code": "nodule", "verdict": "agree\u202e"}]}
    response = client.post(
        f"/v1/results/{uuid.uuid4()}/feedback", json=body, headers=env.headers("radiologist")
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_characters", response.text
    assert "'verdicts.0.verdict'" in response.json()["error"]["message"]


def test_stow_with_one_good_study_and_one_hostile_instance_is_partial_and_resendable(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    headers = env.headers("pacs", facility="F1")
    good, bad, blank = new_study_uid(), new_study_uid(), new_study_uid()
    body, content_type = related_body(
        [
            ("application/dicom", chest(good)),
            ("application/dicom", chest(bad, RescaleSlope="1e308", RescaleIntercept="-1e308")),
            ("application/dicom", with_pixels(chest(blank), np.zeros((64, 64)))),
        ]
    )
    answers = [
        client.post("/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type})
        for _ in range(2)
    ]
    for answer in answers:
        assert answer.status_code == 202, answer.text
        dataset = answer.json()
        stored = [item["00081155"]["Value"][0] for item in dataset["00081199"]["Value"]]
        failed = {
            item["00081155"]["Value"][0]: item["00081197"]["Value"][0]
            for item in dataset["00081198"]["Value"]
        }
        assert stored == [f"{good}.1"]
        assert failed == {f"{bad}.1": 0xA900, f"{blank}.1": 0xA900}
    radiologist = env.headers("radiologist")
    assert client.get(f"/v1/studies/{good}/result", headers=radiologist).status_code == 200
    assert client.get(f"/v1/studies/{bad}/result", headers=radiologist).status_code == 404


def test_one_study_under_two_patients_is_refused(served: tuple[TestClient, Env]) -> None:
    client, env = served
    headers = env.headers("pacs", facility="F1")
    study = new_study_uid()
    first = chest_dicom(study=study, sop=f"{study}.1", patient_id="HOSTILE-A")
    second = chest_dicom(study=study, sop=f"{study}.2", patient_id="HOSTILE-B", view="AP", seed=1)
    files = [("files", (f"{i}.dcm", blob, "application/dicom")) for i, blob in enumerate((first, second))]
    upload = client.post("/v1/studies", files=files, headers=headers)
    assert (upload.status_code, upload.json()["error"]["code"]) == (400, "mixed_patients")
    assert "HOSTILE" not in upload.text
    body, content_type = related_body([("application/dicom", first), ("application/dicom", second)])
    stow = client.post("/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type})
    assert stow.status_code == 409, stow.text
    reasons = [item["00081197"]["Value"][0] for item in stow.json()["00081198"]["Value"]]
    assert reasons == [0xC000, 0xC000]
    assert client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).status_code == 404


HOSTILE_VITALS: dict[str, dict[str, Any]] = {
    "observed_at 9999-12-31T23:59:59-14:00 (year 10000 in UTC)": {"observed_at": "9999-12-31T23:59:59-14:00"},
    "observed_at 0001-01-01T00:00:00+14:00 (year 0 in UTC)": {"observed_at": "0001-01-01T00:00:00+14:00"},
    "observed_at in year 0001": {"observed_at": "0001-01-01T00:00:00Z"},
    "observed_at next millennium": {"observed_at": "2999-01-01T00:00:00Z"},
    "birth_date 2999-01-01": {"patient": {"identifier": "HOSTILE-V", "birth_date": "2999-01-01"}},
    "birth_date 1700": {"patient": {"identifier": "HOSTILE-V", "birth_date": "1700-05-05"}},
    "observed before birth": {
        "patient": {"identifier": "HOSTILE-V", "birth_date": "2020-06-01"},
        "observed_at": "2019-01-01T00:00:00Z",
    },
}


@pytest.mark.parametrize("name", list(HOSTILE_VITALS))
def test_implausible_dates_are_refused_with_422(served: tuple[TestClient, Env], name: str) -> None:
    client, env = served
    body = {"patient": {"identifier": "HOSTILE-V"}, "heart_rate": 80, **HOSTILE_VITALS[name]}
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "implausible_date"
    # One sentence, ended once (the validator's sentence and the API's frame both ended it: "now..").
    assert error["message"].startswith("Field '") and error["message"].endswith(".")
    assert not error["message"].endswith("..")
    assert "2999" not in response.text and "HOSTILE" not in response.text


def test_a_recent_observation_in_any_time_zone_is_accepted(served: tuple[TestClient, Env]) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    client, env = served
    for hours in (14, -12):
        moment = datetime.now(UTC).astimezone(timezone(timedelta(hours=hours))) - timedelta(minutes=1)
        body = {"patient": {"identifier": "HOSTILE-OK"}, "heart_rate": 80, "observed_at": moment.isoformat()}
        response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("query", "status", "resource"),
    [
        ("date=eq9999-12-31", 400, "AuditEvent"),
        ("date=ge9999-12-31T23:59:59-14:00", 400, "AuditEvent"),
        ("date=lt0001-01-01T00:00:00%2B14:00", 400, "AuditEvent"),
        ("_count=%C2%B2", 400, "AuditEvent"),  # '²' passes str.isdigit() but not int()
        ("_offset=%D9%A3", 400, "AuditEvent"),
        ("_id=%C2%B2", 200, "AuditEvent"),  # matches nothing
        ("_id=abc", 200, "AuditEvent"),
        ("date=eq9999-12-31", 400, "Observation"),
        ("date=ge9999-12-31T23:59:59-14:00", 400, "Observation"),
        ("date=%C2%B2", 400, "Observation"),
    ],
)
def test_fhir_searches_with_hostile_values_never_500(
    served: tuple[TestClient, Env], query: str, status: int, resource: str
) -> None:
    client, env = served
    role = "auditor" if resource == "AuditEvent" else "admin"
    response = client.get(f"/fhir/{resource}?{query}", headers=env.headers(role))
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["resourceType"] == "OperationOutcome"


def test_stow_into_one_study_refuses_the_instances_of_another(served: tuple[TestClient, Env]) -> None:
    client, env = served
    headers = env.headers("pacs", facility="F1")
    target, other = new_study_uid(), new_study_uid()
    body, content_type = related_body(
        [("application/dicom", chest(target)), ("application/dicom", chest(other))]
    )
    stow = client.post(
        f"/dicomweb/studies/{target}", content=body, headers={**headers, "Content-Type": content_type}
    )
    assert stow.status_code == 202, stow.text
    dataset = stow.json()
    assert [i["00081155"]["Value"][0] for i in dataset["00081199"]["Value"]] == [f"{target}.1"]
    [failed] = dataset["00081198"]["Value"]
    assert (failed["00081155"]["Value"], failed["00081197"]["Value"]) == ([f"{other}.1"], [0xC000])
    radiologist = env.headers("radiologist")
    assert client.get(f"/v1/studies/{other}/result", headers=radiologist).status_code == 404
    for bad, status in (("1.2.3%2F..%2Fkeys", 404), ("1." + "9" * 80, 400), ("abc", 400)):
        refused = client.post(
            f"/dicomweb/studies/{bad}", content=body, headers={**headers, "Content-Type": content_type}
        )
        assert refused.status_code == status, refused.text


def test_the_server_is_still_ready_after_the_hostile_values(served: tuple[TestClient, Env]) -> None:
    client, env = served
    assert client.get("/readyz").status_code == 200
    # Not one 5xx during the whole module, by the server's own count.
    assert _server_errors(client) == client.app.state.errors_before
    study = new_study_uid()
    good = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", chest(study), "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert good.status_code == 201, good.text


def test_a_hostile_jwks_document_is_503_not_500(tmp_path: Path) -> None:
    """An identity provider (or whoever answers in its place) serving a 30 000-deep JWKS document."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Deep(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = b'{"keys": ' + DEEP_JSON + b"}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Deep)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        env = seeded_env(tmp_path, jwks_url=url, issuer="https://idp.test/realms/h", jwt_algorithm="RS256")
        with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
            token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln"  # alg RS256, kid k1
            answer = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "jwks_unavailable"
    finally:
        server.shutdown()
        server.server_close()
