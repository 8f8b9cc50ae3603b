"""A throwaway PostgreSQL cluster for tests (Debian's ``postgresql``: ``initdb`` + ``pg_ctl``).

:func:`running_postgres` starts one on 127.0.0.1 with a free port (as the ``postgres`` account when the
tests run as root) and yields its URL prefix; :func:`new_postgres_database` creates an empty database in it.
Used by the record tests' fixtures and by the listener tests that share a record between processes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _loopback import free_port


def postgres_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin or on "
        "PATH; install the Debian package with `apt-get install -y --no-install-recommends postgresql`. "
        "The record tests run against a real PostgreSQL and are never skipped."
    )


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A running PostgreSQL cluster; yields the URL prefix ``postgresql+psycopg://postgres@127.0.0.1:PORT``."""
    bindir = postgres_bindir()
    # A PostgreSQL cluster refuses to run as root: run it as the `postgres` account when we are root.
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dxassist-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    port = free_port()

    def run(*args: str) -> None:
        completed = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{completed.stdout}\n{completed.stderr}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "server.log"),
        "-w",
        "-t",
        "60",
        "-o",
        options,
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def new_postgres_database(server_url: str) -> str:
    import psycopg

    name = f"record_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
