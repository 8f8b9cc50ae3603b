"""The HTTP/1.1 protocol of `dxassist serve` (llhttp through uvicorn's httptools protocol, the request
head bounded): what a client sees, on the real console script in a subprocess."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import tiny_models
from _dxassist_cli import serving

from inference.api._http import MAX_HEAD_BYTES
from inference.config import Settings
from inference.security import issue_token


def _exchange(address: tuple[str, int], pieces: list[bytes]) -> bytes:
    """Send ``pieces`` one write each (stopping if the server closes), then read until it closes."""
    with socket.create_connection(address, timeout=30) as connection:
        try:
            for piece in pieces:
                connection.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the client finished: what a bound does
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


@pytest.mark.timeout(600)
def test_request_heads_are_bounded_and_large_bodies_cross(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    token = issue_token(Settings(home=home), subject="router", role="pacs", facility="F1")
    with serving(home, tmp_path / "serve.log") as url:
        parts = urlsplit(url)
        address = (str(parts.hostname), int(parts.port or 80))
        # Headers well inside the bound are served.
        padded = httpx.get(
            f"{url}/healthz", headers={"X-Padding": "a" * (MAX_HEAD_BYTES // 2)}, trust_env=False
        )
        assert padded.status_code == 200

        # A head past the bound, sent a piece at a time: 431 and the connection closed.
        head = b"GET /healthz HTTP/1.1\r\nHost: dxassist\r\nX-Padding: " + b"a" * (2 * MAX_HEAD_BYTES)
        answer = _exchange(address, [head[i : i + 4096] for i in range(0, len(head), 4096)] + [b"\r\n\r\n"])
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"connection: close" in answer.lower()
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "headers_too_large"

        # An endless header line (64 MiB offered): refused long before the end, nothing kept of it.
        endless = [b"GET / HTTP/1.1\r\nHost: dxassist\r\nX-Endless: "] + [b"a" * 65536] * 1024
        assert _exchange(address, endless).startswith(b"HTTP/1.1 431 ")

        # An 8 MB upload whose head and body go out in one write is read whole (the head bound does not
        # count the body): the file is not DICOM, so the API itself answers, in JSON.
        body = (
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.dcm"\r\n'
            b"Content-Type: application/dicom\r\n\r\n" + b"\0" * (8 << 20) + b"\r\n--b--\r\n"
        )
        upload = (
            f"POST /v1/studies HTTP/1.1\r\nHost: dxassist\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body
        answer = _exchange(address, [upload])
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 4") and not status.startswith(b"HTTP/1.1 431"), answer[:300]
        assert b'"error"' in answer

        # The server still serves after all that.
        assert httpx.get(f"{url}/healthz", trust_env=False).status_code == 200
    log = (tmp_path / "serve.log").read_text()
    assert "request_head_too_large" in log
