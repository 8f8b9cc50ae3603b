"""POST /v1/studies reads its multipart/form-data body with the server's own spooled parser: what a sender
gets for each kind of form, and the limits that hold while the body streams in."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from _loopback import live_server

from inference.api import create_app

MAX_INSTANCES = 2
MAX_INSTANCE_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = 12 * 1024 * 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(
            home,
            max_instances=MAX_INSTANCES,
            max_instance_bytes=MAX_INSTANCE_BYTES,
            max_request_bytes=MAX_REQUEST_BYTES,
        )
        tiny_models.seed_both(settings.model_cache, home / "build")
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _post(client: TestClient, env: Env, body: bytes, boundary: str | None = "b0undary") -> httpx.Response:
    content_type = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return client.post(
        "/v1/studies",
        content=body,
        headers={**env.headers("pacs", facility="F1"), "Content-Type": content_type},
    )


def _part(headers: str, content: bytes) -> bytes:
    return b"--b0undary\r\n" + headers.encode() + b"\r\n\r\n" + content + b"\r\n"


def _code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_study_with_other_form_fields_is_analysed(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    response = client.post(
        "/v1/studies",
        data={"note": "from the router", "priority": "ignored"},
        files=[
            ("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))
        ],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["study_instance_uid"] == study


def test_a_file_part_with_an_rfc2231_name_and_no_content_type_is_read(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    body = (
        _part("Content-Disposition: form-data; name*=utf-8''files; filename=\"x.dcm\"", blob)
        + b"--b0undary--\r\n"
    )
    response = _post(client, env, body)
    assert response.status_code == 201, response.text


def test_text_in_the_files_field_is_refused(client: TestClient, env: Env) -> None:
    body = _part('Content-Disposition: form-data; name="files"', b"not a file") + b"--b0undary--\r\n"
    assert _code(_post(client, env, body)) == (400, "missing_files")


def test_a_part_without_a_form_data_name_is_refused(client: TestClient, env: Env) -> None:
    body = _part("Content-Type: application/dicom", b"DICM") + b"--b0undary--\r\n"
    assert _code(_post(client, env, body)) == (400, "malformed")


def test_a_body_without_its_boundary_or_its_end_is_refused(client: TestClient, env: Env) -> None:
    part = _part('Content-Disposition: form-data; name="files"; filename="a"', b"DICM")
    assert _code(_post(client, env, part + b"--b0undary--\r\n", boundary=None)) == (400, "malformed")
    assert _code(_post(client, env, part)) == (400, "malformed")  # no closing delimiter


def test_a_file_of_another_media_type_is_refused(client: TestClient, env: Env) -> None:
    body = (
        _part(
            'Content-Disposition: form-data; name="files"; filename="a.txt"\r\nContent-Type: text/plain', b"x"
        )
        + b"--b0undary--\r\n"
    )
    assert _code(_post(client, env, body)) == (415, "unsupported_media_type")


def test_limits_hold_on_files_and_on_the_body(client: TestClient, env: Env) -> None:
    file_part = _part('Content-Disposition: form-data; name="files"; filename="a"', b"DICM")
    too_many = file_part * (MAX_INSTANCES + 1) + b"--b0undary--\r\n"
    assert _code(_post(client, env, too_many)) == (413, "too_many_instances")
    big = _part(
        'Content-Disposition: form-data; name="files"; filename="a"', b"\0" * (MAX_INSTANCE_BYTES + 1)
    )
    assert _code(_post(client, env, big + b"--b0undary--\r\n")) == (413, "instance_too_large")
    huge = _part('Content-Disposition: form-data; name="files"; filename="a"', b"\0" * MAX_REQUEST_BYTES)
    assert _code(_post(client, env, huge + b"--b0undary--\r\n")) == (413, "payload_too_large")


def test_a_body_past_the_memory_bound_is_spooled_and_read_the_same(
    client: TestClient, env: Env, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """DXASSIST_UPLOAD_MEMORY_BYTES only chooses where the body waits: the same files give the same result
    from memory (the module's server, 64 MiB) and from a spool file (a server whose bound is 1 KiB)."""
    home = tmp_path_factory.mktemp("dxassist-home-spool")
    settings = make_settings(home, upload_memory_bytes=1024)
    tiny_models.seed_both(settings.model_cache, home / "build")
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    assert len(blob) > 1024
    body = _part('Content-Disposition: form-data; name="files"; filename="a.dcm"', blob) + b"--b0undary--\r\n"
    in_memory = _post(client, env, body)
    with TestClient(create_app(settings)) as spooling:
        spooled = _post(spooling, Env(home=home, settings=settings), body)
    assert in_memory.status_code == spooled.status_code == 201, spooled.text
    first, second = in_memory.json(), spooled.json()
    assert first["study_instance_uid"] == second["study_instance_uid"] == study
    assert [(f["code"], f["probability"]) for f in first["findings"]] == [
        (f["code"], f["probability"]) for f in second["findings"]
    ]


def test_a_chunked_upload_sent_after_100_continue_is_read_whole_by_the_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Through uvicorn on a socket: a client that sends ``Expect: 100-continue`` gets the interim answer,
    and a ``Transfer-Encoding: chunked`` body whose chunks end inside the file and inside the closing
    delimiter is analysed as the same file."""
    home = tmp_path_factory.mktemp("dxassist-home-socket")
    settings = make_settings(home)
    tiny_models.seed_both(settings.model_cache, home / "build")
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    body = _part('Content-Disposition: form-data; name="files"; filename="a.dcm"', blob) + b"--b0undary--\r\n"
    close = body.rindex(b"\r\n--b0undary--")
    cuts = [0, 7, len(body) // 2, close + 5, close + 6, len(body)]
    token = Env(home=home, settings=settings).headers("pacs", facility="F1")["Authorization"]
    head = (
        f"POST /v1/studies HTTP/1.1\r\nHost: dxassist\r\nAuthorization: {token}\r\n"
        "Content-Type: multipart/form-data; boundary=b0undary\r\nTransfer-Encoding: chunked\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with (
        live_server(create_app(settings)) as url,
        socket.create_connection(
            (str(urlsplit(url).hostname), int(urlsplit(url).port or 80)), timeout=60
        ) as connection,
    ):
        connection.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += connection.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        for start, end in zip(cuts, cuts[1:], strict=False):
            connection.sendall(f"{end - start:x}\r\n".encode() + body[start:end] + b"\r\n")
        connection.sendall(b"0\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["study_instance_uid"] == study
