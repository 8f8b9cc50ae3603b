"""Servers the tests start on loopback: a free port to give them, an app under uvicorn in a thread,
and polling until they answer.

Tests wait with :func:`wait_until`, never a fixed sleep: CI runs on a slower, differently loaded
machine, where a fixed sleep turns into a race.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import pytest

# Ports handed out below the kernel's ephemeral range (32768-60999 on Linux), a block of its own for each
# pytest-xdist worker, each port once in turn. A port the kernel picked (``bind(0)``) was free only at
# that moment: until the server bound it, the next call could pick it again, another worker could, or a
# client's outgoing connection could take it as its source port.
_FIRST_PORT: Final = 20000
_BLOCK: Final = 1500  # eight workers' blocks end at 32000
_next_offset: int | None = None


def _block_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return _FIRST_PORT + (number % 8) * _BLOCK


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, not handed out before by this process (until its block wraps)."""
    global _next_offset
    if _next_offset is None:
        # A process of its own (a helper the test started) starts elsewhere in the block than the test.
        _next_offset = random.Random(os.getpid()).randrange(_BLOCK)
    start = _block_start()
    for _ in range(_BLOCK):
        port = start + _next_offset
        _next_offset = (_next_offset + 1) % _BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (a server still running, or a socket in TIME_WAIT)
            return port
    with socket.socket() as sock:  # every port of the block busy: let the kernel choose
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
