"""Servers the tests start on loopback: a free port to give them, an app under uvicorn in a thread,
and polling until they answer.

Tests wait with :func:`wait_until`, never a fixed sleep: CI runs on a slower, differently loaded
machine, where a fixed sleep turns into a race.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, what: str = "condition", interval: float = 0.2
) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test naming
    ``what`` (and the last value) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout} s waiting for {what} (last: {value!r}).")
        time.sleep(interval)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` (ASGI) under uvicorn in a thread on a free loopback port; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=60, interval=0.05, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
