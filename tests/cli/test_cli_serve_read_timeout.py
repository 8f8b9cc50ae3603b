"""`dxassist serve` does not wait for ever on a request that stopped arriving (a slow-loris client, a
router cut in the middle of an upload): 408 and the connection closed after
``DXASSIST_HTTP_READ_TIMEOUT`` (a head from its first byte, a body from its last). Before, half a head
or half an upload held its connection for good, and enough of them held every descriptor of the process.

The real console script in a subprocess, with a 2 s timeout; every wait below is a liveness bound
(socket timeouts many times the setting), never a speed assertion.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import tiny_models
from _dxassist_cli import serving

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "api"))
from _api_dicom import chest_dicom, uid  # noqa: E402

from inference.config import Settings
from inference.security import issue_token

TIMEOUT_SECONDS = 2
LIVENESS_SECONDS = 30  # a socket that gets no answer in this long would be the old behaviour


def _answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds it)."""
    answer = b""
    try:
        while chunk := connection.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def _timed_out(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


def _multipart(payload: bytes) -> bytes:
    return (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.dcm"\r\n'
        b"Content-Type: application/dicom\r\n\r\n" + payload + b"\r\n--b--\r\n"
    )


def _upload_head(token: str, length: int) -> bytes:
    return (
        f"POST /v1/studies HTTP/1.1\r\nHost: dxassist\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "two-workers"])
def test_requests_that_stop_arriving_are_answered_408_and_the_rest_is_served(
    tmp_path: Path, workers: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    token = issue_token(Settings(home=home), subject="router", role="pacs", facility="F1")
    log = tmp_path / "serve.log"
    env = {"DXASSIST_HTTP_READ_TIMEOUT": str(TIMEOUT_SECONDS), "DXASSIST_WORKERS": workers}
    with serving(home, log, **env) as url:
        parts = urlsplit(url)
        address = (str(parts.hostname), int(parts.port or 80))

        # Half a head, then nothing.
        with socket.create_connection(address, timeout=LIVENESS_SECONDS) as connection:
            connection.sendall(b"GET /v1/worklist HTTP/1.1\r\nHost: dxassist\r\n")
            _timed_out(_answer(connection))

        # A head trickled a byte at a time, each gap shorter than the timeout: its deadline runs from its
        # first byte, so trickling gains nothing.
        with socket.create_connection(address, timeout=LIVENESS_SECONDS) as connection:
            connection.sendall(b"GET /v1/worklist HTTP/1.1\r\nHost: dxassist\r\nX-Slow: ")
            answer = b""
            for _ in range(8 * TIMEOUT_SECONDS):
                try:
                    connection.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.5)
            _timed_out(answer + _answer(connection))

        # Half an upload (a valid token, a real radiograph cut in the middle), then nothing: 408, closed,
        # and nothing of it filed.
        study = _multipart(chest_dicom(study=uid(30, 1), sop=uid(30, 1, 1)))
        with socket.create_connection(address, timeout=LIVENESS_SECONDS) as connection:
            connection.sendall(_upload_head(token, len(study)) + study[: len(study) // 2])
            _timed_out(_answer(connection))
        reader = issue_token(Settings(home=home), subject="reader", role="radiologist", facility="F1")
        worklist = httpx.get(
            f"{url}/v1/worklist", headers={"Authorization": f"Bearer {reader}"}, trust_env=False
        )
        assert worklist.status_code == 200 and worklist.json()["items"] == [], worklist.text

        # An upload its client gives up on (closes the connection half-way): no 500, no stack in the log.
        with socket.create_connection(address, timeout=LIVENESS_SECONDS) as connection:
            connection.sendall(_upload_head(token, len(study)) + study[: len(study) // 3])
            time.sleep(TIMEOUT_SECONDS / 4)

        # A body that keeps coming, with gaps shorter than the timeout, is read whole although it takes
        # longer than the timeout in all (the body's deadline runs from its last byte).
        with socket.create_connection(address, timeout=LIVENESS_SECONDS) as connection:
            connection.sendall(_upload_head(token, len(study)))
            pieces = [study[i : i + len(study) // 6 + 1] for i in range(0, len(study), len(study) // 6 + 1)]
            for piece in pieces:
                time.sleep(TIMEOUT_SECONDS / 2)
                connection.sendall(piece)
            answer = _answer(connection)
        assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 201 Created", answer[:300]

        assert httpx.get(f"{url}/healthz", trust_env=False).status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert sum(line.get("event") == "request_timeout" for line in lines) >= 3
    assert not [line for line in lines if line.get("status") == 500 or "exc_type" in line]
    # The cut upload's access line says what its client was answered.
    cut = [line for line in lines if line.get("route") == "/v1/studies" and line.get("status") != 201]
    assert sorted((line["status"], line["code"]) for line in cut) == [
        (408, "request_timeout"),
        (499, "client_disconnected"),
    ]


@pytest.mark.timeout(600)
def test_a_connection_that_never_sends_a_byte_is_closed(tmp_path: Path) -> None:
    """The simplest slow-loris: connections opened and left silent. Their head had no first byte to
    start its deadline, so each was held for good (uvicorn's keep-alive timeout starts only after a
    response)."""
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    with serving(home, tmp_path / "serve.log", DXASSIST_HTTP_READ_TIMEOUT=str(TIMEOUT_SECONDS)) as url:
        parts = urlsplit(url)
        address = (str(parts.hostname), int(parts.port or 80))
        with socket.create_connection(address, timeout=LIVENESS_SECONDS) as connection:
            # Closed by the server (nothing to answer: no request began); a timeout here is the old hold.
            assert _answer(connection) == b""
        assert httpx.get(f"{url}/healthz", trust_env=False).status_code == 200
