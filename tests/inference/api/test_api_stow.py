"""POST /dicomweb/studies: STOW-RS bodies in, STOW-RS DICOM JSON out, one verdict per instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tiny_models
from _api_dicom import CR_IMAGE, CT_IMAGE, chest_dicom, related_body
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app
from inference.api._multipart import SPOOL_IN_MEMORY_BYTES
from inference.security import issue_token

REFERENCED = "00081199"
FAILED = "00081198"
OTHER_FAILURES = "0008119A"
REASON = "00081197"
SOP_CLASS = "00081150"
SOP_INSTANCE = "00081155"
RETRIEVE = "00081190"


def _stow(client: TestClient, env: Env, parts: list[tuple[str, bytes]]):
    body, content_type = related_body(parts)
    headers = {**env.headers("pacs", facility="F1"), "Content-Type": content_type}
    return client.post("/dicomweb/studies", content=body, headers=headers)


def _value(item: dict, tag: str) -> object:
    return item[tag]["Value"][0]


# PS3.18 Table I.1-1: Retrieve URL is Type 2 at the top level and in each Referenced SOP Sequence item.
# dxassist serves no WADO-RS Retrieve, so it is present and empty: a UR without a Value.
EMPTY_URL = {"vr": "UR"}


def test_all_stored_is_200_with_referenced_sops_and_the_result_is_filed(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    parts = [
        ("application/dicom", chest_dicom(study=study, sop=f"{study}.1", view="PA", blob=True)),
        ("application/dicom", chest_dicom(study=study, sop=f"{study}.2", view="LL")),
    ]
    response = _stow(client, env, parts)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    dataset = response.json()
    assert FAILED not in dataset
    referenced = dataset[REFERENCED]
    assert referenced["vr"] == "SQ"
    assert {_value(i, SOP_INSTANCE) for i in referenced["Value"]} == {f"{study}.1", f"{study}.2"}
    assert all(_value(i, SOP_CLASS) == CR_IMAGE for i in referenced["Value"])
    assert dataset[RETRIEVE] == EMPTY_URL
    assert [i[RETRIEVE] for i in referenced["Value"]] == [EMPTY_URL, EMPTY_URL]
    # Analysis ran before the answer: the result is there now.
    result = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist"))
    assert result.status_code == 200 and result.json()["study_instance_uid"] == study


def test_two_studies_in_one_request_get_an_empty_retrieve_url_and_each_result_is_filed(
    client: TestClient, env: Env
) -> None:
    first, second = new_study_uid(), new_study_uid()
    parts = [
        ("application/dicom", chest_dicom(study=first, sop=f"{first}.1", view="PA")),
        ("application/dicom", chest_dicom(study=second, sop=f"{second}.1", view="PA")),
    ]
    response = _stow(client, env, parts)
    assert response.status_code == 200, response.text
    dataset = response.json()
    assert dataset[RETRIEVE] == EMPTY_URL
    referenced = dataset[REFERENCED]["Value"]
    assert {_value(i, SOP_INSTANCE) for i in referenced} == {f"{first}.1", f"{second}.1"}
    assert [i[RETRIEVE] for i in referenced] == [EMPTY_URL, EMPTY_URL]
    # The client finds each analysis by the Study Instance UID of what it sent.
    for study in (first, second):
        result = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist"))
        assert result.status_code == 200 and result.json()["study_instance_uid"] == study


def test_some_failed_is_202_with_failure_reasons(client: TestClient, env: Env) -> None:
    good, ct = new_study_uid(), new_study_uid()
    parts = [
        ("application/dicom", chest_dicom(study=good, sop=f"{good}.1")),
        ("application/dicom", chest_dicom(study=ct, sop=f"{ct}.1", modality="CT")),
        ("application/dicom", b"not a dicom file at all" * 20),
    ]
    response = _stow(client, env, parts)
    assert response.status_code == 202
    dataset = response.json()
    assert [_value(i, SOP_INSTANCE) for i in dataset[REFERENCED]["Value"]] == [f"{good}.1"]
    (ct_item,) = dataset[FAILED]["Value"]
    assert _value(ct_item, SOP_INSTANCE) == f"{ct}.1" and _value(ct_item, SOP_CLASS) == CT_IMAGE
    assert _value(ct_item, REASON) == 0x0122  # SOP class not supported
    # The garbage names no instance: an Other Failures item (PS3.18), not a Failed SOP item without UIDs.
    (garbage,) = dataset[OTHER_FAILURES]["Value"]
    assert garbage == {REASON: {"vr": "US", "Value": [0xC000]}}  # cannot understand
    assert ct_item[REASON]["vr"] == "US"


def test_parts_that_name_no_instance_are_other_failures_and_every_failed_sop_names_its_instance(
    client: TestClient, env: Env
) -> None:
    # PS3.18 Table 10.5.3-3: a Failed SOP Sequence item's SOP Class and Instance UIDs are Type 1. A part
    # that is not DICOM had an item without them, which strict clients (dcm4che's stowrs) cannot read.
    study = new_study_uid()
    parts = [
        ("text/plain", b"a note, not an image"),
        ("application/dicom", b"DICM" * 64),
        ("application/dicom", chest_dicom(study=study, sop=f"{study}.1", view="LL")),
    ]
    response = _stow(client, env, parts)
    assert response.status_code == 409, response.text
    dataset = response.json()
    assert [(_value(i, SOP_CLASS), _value(i, SOP_INSTANCE)) for i in dataset[FAILED]["Value"]] == [
        (CR_IMAGE, f"{study}.1")
    ]
    assert [_value(i, REASON) for i in dataset[OTHER_FAILURES]["Value"]] == [0xC000, 0xC000]
    assert all(set(i) == {REASON} for i in dataset[OTHER_FAILURES]["Value"])


def test_all_failed_is_409(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    response = _stow(
        client, env, [("application/dicom", chest_dicom(study=study, sop=f"{study}.1", view="LL"))]
    )
    assert response.status_code == 409
    dataset = response.json()
    assert REFERENCED not in dataset
    assert dataset[RETRIEVE] == EMPTY_URL
    assert _value(dataset[FAILED]["Value"][0], SOP_INSTANCE) == f"{study}.1"


def test_wrong_content_type_is_415_and_broken_bodies_400(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    body, _ = related_body([("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))])
    headers = env.headers("pacs", facility="F1")
    for content_type in ("application/dicom", 'multipart/related; type="application/dicom+json"; boundary=x'):
        response = client.post(
            "/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type}
        )
        assert response.status_code == 415, content_type
        assert response.json()["error"]["code"] == "unsupported_media_type"
    no_boundary = client.post(
        "/dicomweb/studies",
        content=body,
        headers={**headers, "Content-Type": 'multipart/related; type="application/dicom"'},
    )
    assert no_boundary.status_code == 400
    truncated = client.post(
        "/dicomweb/studies",
        content=body[:-40],
        headers={
            **headers,
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=dxassist-test-boundary',
        },
    )
    assert truncated.status_code == 400 and truncated.json()["error"]["code"] == "malformed"


def test_resending_returns_the_same_result(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    parts = [("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))]
    assert _stow(client, env, parts).status_code == 200
    first = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).json()
    assert _stow(client, env, parts).status_code == 200
    again = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).json()
    assert first["result_id"] == again["result_id"]


def test_boundaries_longer_than_rfc_2046_quoted_or_not_are_accepted(client: TestClient, env: Env) -> None:
    # Orthanc 1.10's DICOMweb plugin sends a 73-character boundary; RFC 2046 says at most 70.
    headers = env.headers("pacs", facility="F1")
    for boundary, quoted in (("o" * 73, False), ("x-" * 90 + "=:?/", True)):
        study = new_study_uid()
        body, content_type = related_body(
            [("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))], boundary=boundary
        )
        if quoted:
            content_type = content_type.replace(f"boundary={boundary}", f'boundary="{boundary}"')
        response = client.post(
            "/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type}
        )
        assert response.status_code == 200, (len(boundary), response.text)
    too_long = "b" * 201
    body, content_type = related_body([("application/dicom", b"x")], boundary=too_long)
    response = client.post(
        "/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type}
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "malformed",
        "message": "The multipart boundary must have 1 to 200 printable ASCII characters.",
    }


def test_a_body_spooled_to_disk_files_every_good_study_and_reports_each_bad_part(
    client: TestClient, env: Env
) -> None:
    # Over the in-memory spool size: the body goes to a file and is split in place, part by part.
    first, second = new_study_uid(), new_study_uid()
    junk = b"\x00" * (SPOOL_IN_MEMORY_BYTES + 4096)
    parts = [
        ("application/dicom", chest_dicom(study=first, sop=f"{first}.1", view="PA")),
        ("application/dicom", junk),
        ("application/dicom", chest_dicom(study=second, sop=f"{second}.1", view="PA")),
        ("application/dicom", chest_dicom(study=first, sop=f"{first}.2", view="LL")),
    ]
    response = _stow(client, env, parts)
    assert response.status_code == 202, response.text
    dataset = response.json()
    stored = {_value(i, SOP_INSTANCE) for i in dataset[REFERENCED]["Value"]}
    assert stored == {f"{first}.1", f"{first}.2", f"{second}.1"}
    assert FAILED not in dataset
    assert [_value(i, REASON) for i in dataset[OTHER_FAILURES]["Value"]] == [0xC000]
    for study in (first, second):
        result = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist"))
        assert result.status_code == 200, study


def test_a_body_over_the_limit_is_413_before_the_rest_is_read(tmp_path: Path) -> None:
    limit, chunk, chunks = 64 * 1024, 4096, 4096  # a 16 MiB body offered against a 64 KiB limit
    settings = make_settings(tmp_path, max_request_bytes=limit)
    token = issue_token(settings, subject="test-pacs", role="pacs", facility="F1")
    app = create_app(settings)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\x00" * chunk, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/dicomweb/studies",
        "raw_path": b"/dicomweb/studies",
        "root_path": "",
        "query_string": b"",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [  # no Content-Length: the limit is found while the body streams in
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b'multipart/related; type="application/dicom"; boundary=b'),
        ],
    }
    with TestClient(app) as client:
        client.portal.call(app, scope, receive, send)  # the app's own event loop, started by TestClient
        assert client.get("/healthz").status_code == 200
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b'"payload_too_large"' in body
    assert pulled <= limit // chunk + 2  # stopped at the limit, not after the 16 MiB


def test_a_part_over_the_instance_limit_fails_by_its_size_and_the_others_are_stored(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_instance_bytes=256 * 1024)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    env = Env(tmp_path, settings)
    study = new_study_uid()
    parts = [
        ("application/dicom", b"\x00" * (3 * 1024 * 1024)),  # never read: refused by its size
        ("application/dicom", chest_dicom(study=study, sop=f"{study}.1")),
    ]
    with TestClient(create_app(settings)) as client:
        response = _stow(client, env, parts)
    assert response.status_code == 202, response.text
    dataset = response.json()
    assert [_value(i, SOP_INSTANCE) for i in dataset[REFERENCED]["Value"]] == [f"{study}.1"]
    assert FAILED not in dataset
    (failed,) = dataset[OTHER_FAILURES]["Value"]
    assert _value(failed, REASON) == 0xA700


def test_every_instance_failing_only_for_now_is_503_with_retry_after_and_a_resend_later_is_stored(
    tmp_path: Path,
) -> None:
    """The record failing (here: a trigger that names a missing table, so SQLite answers "no such table"
    to every result written): nothing is wrong with the instances, so the sender is told to send them
    again (503 and Retry-After), not that they conflict (409, which a PACS treats as final)."""
    import sqlite3

    settings = make_settings(tmp_path)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    env = Env(tmp_path, settings)
    study = new_study_uid()
    part = ("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))
    with TestClient(create_app(settings)) as client:
        database = sqlite3.connect(tmp_path / "record.db")
        try:
            database.execute(
                "CREATE TRIGGER record_broken BEFORE INSERT ON results BEGIN INSERT INTO gone VALUES (1); END"
            )
            database.commit()
            response = _stow(client, env, [part])
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            (failed,) = response.json()[FAILED]["Value"]
            assert _value(failed, SOP_INSTANCE) == f"{study}.1"
            assert _value(failed, REASON) == 0xA700
            database.execute("DROP TRIGGER record_broken")
            database.commit()
        finally:
            database.close()
        again = _stow(client, env, [part])
    assert again.status_code == 200, again.text
