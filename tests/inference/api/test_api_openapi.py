"""The OpenAPI document says what the server really answers (statuses, media types, headers, ids)."""

from __future__ import annotations

import pytest
from _api_dicom import related_body
from _api_env import Env, TestClient

from inference.api._openapi import OPERATION_IDS
from inference.api._ratelimit import EXEMPT

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def doc(client: TestClient) -> dict:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _refs(node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_reference_resolves(doc: dict) -> None:
    # A dangling $ref (the break-the-glass request's body was one) makes generated clients fail to build
    # and fuzzers skip the body.
    for ref in set(_refs(doc)):
        assert ref.startswith("#/"), ref
        node: object = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_every_operation_has_its_hand_chosen_id(doc: dict) -> None:
    found = {(method, path): op["operationId"] for method, path, op in _operations(doc)}
    # Every served operation is in the table and nothing in the table is stale.
    assert found == OPERATION_IDS
    assert len(set(found.values())) == len(found)
    assert all(op_id[0].islower() and "_" not in op_id for op_id in found.values())


def test_no_fastapi_validation_error_anywhere(doc: dict) -> None:
    assert "HTTPValidationError" not in str(doc)
    for method, path, operation in _operations(doc):
        if operation.get("parameters") or "requestBody" in operation:
            assert "400" in operation["responses"], (method, path)
        if "422" in operation["responses"] and not path.startswith("/fhir"):
            media = operation["responses"]["422"]["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_error_media_types_and_schemas(doc: dict) -> None:
    for method, path, operation in _operations(doc):
        for status, answer in operation["responses"].items():
            if status[0] not in "45" or path == "/readyz":
                continue
            if path.startswith("/dicomweb") and status == "409":
                # Every instance failed: a STOW-RS response with FailedSOPSequence, in DICOM JSON (or XML).
                assert list(answer["content"]) == ["application/dicom+json", "application/dicom+xml"]
            elif path.startswith("/fhir"):
                assert answer["content"] == {
                    "application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
                }, (method, path, status)
            else:
                assert answer["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                }, (method, path, status)


def test_statuses_that_occur_are_documented(doc: dict) -> None:
    for method, path, operation in _operations(doc):
        responses = operation["responses"]
        for answer in responses.values():
            assert answer["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}
        if path not in EXEMPT:
            assert responses["429"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
        if operation.get("security"):
            assert {"401", "403", "503"} <= set(responses), (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"]
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), (method, path)
    assert doc["components"]["headers"]["Retry-After"]["required"] is True


def test_success_media_types(doc: dict) -> None:
    paths = doc["paths"]
    stow = paths["/dicomweb/studies"]["post"]["responses"]
    assert stow["200"]["content"] == {
        "application/dicom+json": {"schema": {"$ref": "#/components/schemas/DicomJsonDataset"}},
        "application/dicom+xml": {
            "schema": {"type": "string", "description": "The dataset as PS3.19 Native DICOM Model."}
        },
    }
    image = paths["/v1/results/{result_id}/image.png"]["get"]["responses"]["200"]["content"]
    assert image == {"image/png": {"schema": {"type": "string", "format": "binary"}}}
    fhir = paths["/fhir/{resource_type}"]["get"]["responses"]["200"]["content"]
    assert list(fhir) == ["application/fhir+json"]
    assert "application/json" in paths["/v1/vitals"]["post"]["responses"]["201"]["content"]


def test_stow_rs_error_is_sent_as_the_document_declares(client: TestClient, env: Env) -> None:
    headers = env.headers("pacs")
    body, content_type = related_body([("application/dicom", b"not a dicom file" * 10)])
    answer = client.post("/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type})
    refused = client.post(
        "/dicomweb/studies", content=b"x", headers={**headers, "Content-Type": "application/json"}
    )
    assert refused.status_code == 415
    assert refused.headers["content-type"] == "application/json"
    assert set(refused.json()["error"]) == {"code", "message"}
    # A body whose every instance fails is a STOW-RS answer, in DICOM JSON.
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/dicom+json")


def test_unknown_query_parameters_are_refused_outside_fhir(client: TestClient, env: Env) -> None:
    misspelt = client.get("/v1/worklist?limt=5", headers=env.headers("radiologist"))
    assert misspelt.status_code == 400
    assert misspelt.json()["error"]["code"] == "invalid_field"
    assert "limt" in misspelt.json()["error"]["message"]
    assert client.get("/v1/worklist?limit=5", headers=env.headers("radiologist")).status_code == 200
    # FHIR R4: a server ignores parameters it does not know unless the client asks for strict handling.
    lenient = client.get("/fhir/Patient?_summary=count", headers=env.headers("clinician"))
    assert lenient.status_code == 200
