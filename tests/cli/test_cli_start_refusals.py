"""What an operator sees when `dxassist` cannot start: one line saying what is wrong, no traceback.

Before, a port another process held was reported only after the record was migrated and the models
loaded, as "text withheld" (uvicorn's own message, which the log guard withholds), and a second
`serve --workers N` shared the port of another one's workers without a word; a database that did not
answer was a driver traceback for `serve`, `listen`, `user` and `audit verify`; a DXASSIST_HOME that
cannot be a folder, a pathlib traceback.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from _dxassist_cli import DXASSIST, dxassist_env
from _loopback import free_port


def _run(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@contextmanager
def _held_port(*, reuse_port: bool = False) -> Iterator[int]:
    """A loopback port another process's socket listens on (with ``SO_REUSEPORT`` as the workers of a
    `dxassist serve --workers N` bind theirs)."""
    holder = socket.socket()
    if reuse_port:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("command", "reuse_port"),
    [(["serve"], False), (["serve", "--workers", "2"], True)],
    ids=["serve", "serve-workers-beside-workers"],
)
def test_a_port_in_use_is_one_line_before_anything_loads(
    tmp_path: Path, command: list[str], reuse_port: bool
) -> None:
    home = tmp_path / "home"
    with _held_port(reuse_port=reuse_port) as port:
        done = _run([*command, "--port", str(port)], dxassist_env(home))
    assert done.returncode == 2, done.stderr  # as `dxassist listen` for its port
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "another process" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "text withheld" not in done.stderr + done.stdout
    # Refused before the record was made or a model looked for (it used to be after both).
    assert not (home / "record.db").exists()
    assert "Could not fetch" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "command",
    [["serve"], ["listen"], ["user", "list"], ["audit", "verify"], ["migrate"]],
    ids=["serve", "listen", "user-list", "audit-verify", "migrate"],
)
def test_a_database_that_does_not_answer_is_named_with_the_reason(tmp_path: Path, command: list[str]) -> None:
    closed = free_port()  # nothing listens there
    env = {
        **dxassist_env(tmp_path / "home"),
        "DXASSIST_DATABASE_URL": f"postgresql+psycopg://dxassist:s3cret-pw@127.0.0.1:{closed}/record",
    }
    args = [*command, "--port", str(free_port())] if command[0] in ("serve", "listen") else command
    done = _run(args, env)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert f"127.0.0.1:{closed}/record cannot be opened" in lines[0]
    assert "refused" in lines[0].lower()  # the driver's reason
    assert "s3cret-pw" not in done.stderr + done.stdout


def test_a_record_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "record.db").write_bytes(b"not a database, but a file someone copied here" * 100)
    done = _run(["user", "list"], dxassist_env(home))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "record.db cannot be opened" in done.stderr
    assert "not a database" in done.stderr


def test_a_home_that_cannot_be_a_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    done = _run(["serve", "--port", str(free_port())], dxassist_env(blocker / "home"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "DXASSIST_HOME" in done.stderr and "cannot be used" in done.stderr


def test_serve_on_the_ipv6_wildcard_starts_beside_an_ipv4_listener_of_its_port(tmp_path: Path) -> None:
    """`--host ::` binds IPv6 only (asyncio sets IPV6_V6ONLY), so it coexists with another program on the
    IPv4 loopback of the same port; the check before loading must not refuse what the server can bind."""
    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    with _held_port() as port, open(log, "wb") as out:
        process = subprocess.Popen(
            [str(DXASSIST), "serve", "--host", "::", "--port", str(port)],
            env={**dxassist_env(home), "DXASSIST_MODEL_WATCH_SECONDS": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            answered = False
            while not answered and process.poll() is None:
                try:
                    answered = httpx.get(
                        f"http://[::1]:{port}/healthz", timeout=2, trust_env=False
                    ).is_success
                except httpx.HTTPError:
                    time.sleep(0.3)
            assert answered, log.read_text()[-2000:]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_a_password_with_an_unencoded_at_sign_is_not_shown_in_the_refusal(tmp_path: Path) -> None:
    """``s3cr@t-tail`` written as is: the URL's parser takes ``t-tail@127.0.0.1`` for the host, which the
    refusal named (and the driver's reason quoted), printing the end of the password on stderr."""
    env = {
        **dxassist_env(tmp_path / "home"),
        "DXASSIST_DATABASE_URL": f"postgresql+psycopg://dxassist:s3cr@t-tail@127.0.0.1:{free_port()}/record",
    }
    done = _run(["user", "list"], env)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "t-tail" not in done.stderr + done.stdout
    assert "%40" in done.stderr  # what to write instead
