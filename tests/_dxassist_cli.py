"""Running the real `dxassist` console script from tests, with a home of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from _loopback import free_port

REPO = Path(__file__).resolve().parent.parent
DXASSIST = Path(sys.executable).with_name("dxassist")


def dxassist_env(home: Path) -> dict[str, str]:
    """The environment of a ``dxassist`` subprocess with its own home and embedded defaults."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DXASSIST_") and k != "MLFLOW_TRACKING_URI"
    }
    env["DXASSIST_HOME"] = str(home)
    return env


def run_dxassist(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dxassist ARGS`` with ``home`` as its home, its output captured (text), never raising on failure."""
    return subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def plain_backup(root: Path) -> Path:
    """``root/backup``: an unsigned plain backup of ``root/server``, a home whose record holds an audit
    entry (a token issued)."""
    home = root / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    made = run_dxassist(home, "backup", "create", str(root / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr
    return root / "backup"


@contextmanager
def serving_process(
    home: Path, log: Path, *, args: Sequence[str] = (), ready_seconds: float = 120, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``dxassist serve [args]`` on a free loopback port with ``home``, until the block ends; yields its URL
    and the process.

    The model watcher is off unless ``env`` sets ``DXASSIST_MODEL_WATCH_SECONDS``; the server must answer
    ``/readyz`` within ``ready_seconds``.
    """
    port = free_port()
    environment = {**dxassist_env(home), "DXASSIST_MODEL_WATCH_SECONDS": "0", **env}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(DXASSIST), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_seconds
        while True:
            assert process.poll() is None, f"dxassist serve exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dxassist serve never became ready"
            time.sleep(0.3)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def serving(home: Path, log: Path, *, ready_seconds: float = 120, **env: str) -> Iterator[str]:
    """``dxassist serve`` on a free loopback port with ``home``, until the block ends; yields its URL.

    The model watcher is off unless ``env`` sets ``DXASSIST_MODEL_WATCH_SECONDS``; the server must answer
    ``/readyz`` within ``ready_seconds``.
    """
    with serving_process(home, log, ready_seconds=ready_seconds, **env) as (url, _process):
        yield url
