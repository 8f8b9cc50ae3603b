"""Single sign-on against a provider that misbehaves on the wire: one that trickles its answer a byte at a
time must not hold the reader's request (and a worker of the server) for as long as it likes, and an https
provider naming a plain http endpoint is not used.

The provider is a plain socket server on loopback that answers the discovery document at once and then,
at the endpoint under test, sends headers and a body one space at a time.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from _api_env import make_settings  # noqa: I001  (the API tests' helpers, on the path through _ui_live)
from _loopback import free_port
from _oidc_provider import CLIENT_ID, query
from _ui_live import Env, TestClient

from inference.api import create_app
from inference.services import _sso

_TRICKLE_BYTES = 40  # at one space every 0.25 s: ten seconds, then the answer ends


@dataclass
class _Trickler:
    issuer: str
    slow_path: str
    finished: threading.Event = field(default_factory=threading.Event)
    dropped: threading.Event = field(default_factory=threading.Event)


def _handler(trickler: _Trickler) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline().decode("latin-1")
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            path = line.split(" ")[1] if line.count(" ") >= 2 else ""
            if path.split("?")[0] != trickler.slow_path:
                document = json.dumps(
                    {
                        "issuer": trickler.issuer,
                        "authorization_endpoint": f"{trickler.issuer}/authorization",
                        "token_endpoint": f"{trickler.issuer}/token",
                        "jwks_uri": f"{trickler.issuer}/jwks",
                    }
                ).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(document)}\r\n\r\n".encode()
                    + document
                )
                return
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {_TRICKLE_BYTES + 2}\r\n\r\n{{".encode()
            )
            try:
                for _ in range(_TRICKLE_BYTES):
                    if trickler.finished.wait(0.25):
                        break
                    self.wfile.write(b" ")
                    self.wfile.flush()
                self.wfile.write(b"}")
                self.wfile.flush()
            except OSError:  # the server hung up on the trickle
                trickler.dropped.set()
            finally:
                trickler.finished.set()

    return Handler


@contextmanager
def _trickling_provider(slow_path: str) -> Iterator[_Trickler]:
    port = free_port()
    trickler = _Trickler(issuer=f"http://127.0.0.1:{port}", slow_path=slow_path)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", port), _handler(trickler)) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield trickler
        finally:
            trickler.finished.set()
            server.shutdown()
            thread.join(timeout=30)


@pytest.mark.parametrize("slow_path", ["/.well-known/openid-configuration", "/token"])
def test_a_provider_trickling_its_answer_is_given_up_on_with_a_clear_page(
    env: Env, slow_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each byte arrives well within httpx's read timeout: only a limit on the whole answer ends it. The
    # limit is shortened so that the test does not wait out the real one.
    monkeypatch.setattr(_sso, "_DEADLINE", 1.0, raising=False)
    with _trickling_provider(slow_path) as trickler:
        settings = make_settings(env.home, ui_oidc_issuer=trickler.issuer, ui_oidc_client_id=CLIENT_ID)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            start = client.get("/ui/sso/start", follow_redirects=False)
            if slow_path == "/token":
                assert start.status_code == 302, start.text
                state = query(start.headers["location"])["state"]
                answer = client.get(f"/ui/sso/callback?code=abc&state={state}", follow_redirects=False)
            else:
                answer = start
            assert answer.status_code == 503, answer.text
            assert "identity provider does not answer" in answer.text
            assert 'name="username"' in answer.text  # the password sign-in stays at hand
        assert trickler.finished.wait(60), "the provider never finished its answer"
        assert trickler.dropped.is_set(), "the server waited for the provider's whole trickled answer"


def test_an_https_provider_naming_a_plain_http_endpoint_is_not_used(env: Env, tmp_path: Path) -> None:
    """The client secret and the code would cross in clear to whatever listens there."""
    from _certificates import certificates, serve_tls

    tls = certificates(tmp_path)
    plain_port = free_port()
    issuer = f"https://127.0.0.1:{free_port()}"
    document = json.dumps(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorization",
            "token_endpoint": f"http://127.0.0.1:{plain_port}/token",
            "jwks_uri": f"{issuer}/jwks",
        }
    ).encode()

    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's signature
            pass

    server = HTTPServer(("127.0.0.1", int(issuer.rsplit(":", 1)[1])), Discovery)
    serve_tls(server, tls["server_cert"], tls["server_key"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = make_settings(
            env.home, ui_oidc_issuer=issuer, ui_oidc_client_id=CLIENT_ID, ui_oidc_cafile=tls["ca"]
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            start = client.get("/ui/sso/start", follow_redirects=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    assert start.status_code == 503, start.headers.get("location")
    assert "identity provider does not answer" in start.text
