"""Several hosts on one machine: Linux network namespaces joined by veth pairs to a bridge.

:class:`Lab` makes a private switch (a namespace holding a bridge) and one namespace per host, each with
a veth pair whose other end is on the bridge and an address of its own in a /24 chosen at random. Nothing
is added to the machine's own namespace: its routes, addresses and firewall stay as they were, and the
hosts reach nothing but each other. Processes start in a host with ``ip netns exec``; :meth:`Host.kill`
is a host dying (every process SIGKILLed, its link cut); :meth:`Lab.close` removes everything.

Needs root and iproute2 (``ip``); PostgreSQL is started the way ``tests/inference/record/conftest.py``
does (Debian's ``initdb`` + ``pg_ctl`` as the ``postgres`` account), but listening on a host's address.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


@dataclass
class Host:
    """One namespace host: its name, address and the processes started in it."""

    lab: Lab
    name: str
    namespace: str
    address: str
    link: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in this host, its output to ``log``."""
        handle = log.open("ab")
        try:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *args],
                env=dict(env) if env is not None else None,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            handle.close()
        self.processes.append(process)
        return process

    def run(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` in this host to completion."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *args],
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pids(self) -> list[int]:
        """Every process living in this host's namespace."""
        done = _ip("netns", "pids", self.namespace, check=False)
        return [int(pid) for pid in done.stdout.split()]

    def kill(self) -> None:
        """The host dies: every process in it is SIGKILLed at once and its network link goes down."""
        _ip("-n", self.lab.switch, "link", "set", self.link, "down", check=False)
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class Lab:
    """A switch and hosts on a private /24; use as a context manager."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.switch = f"dx{self.tag}-sw"
        self.prefix = f"10.{random.randint(64, 250)}.{random.randint(1, 250)}"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []

    def __enter__(self) -> Lab:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str, last_octet: int) -> Host:
        """A new host ``name`` at ``<prefix>.<last_octet>``, cabled to the switch."""
        namespace = f"dx{self.tag}-{name}"
        inside, outside = f"h{self.tag}{name}"[:15], f"s{self.tag}{name}"[:15]
        _ip("netns", "add", namespace)
        self._made.append(namespace)
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", outside, "master", "br0")
        _ip("-n", self.switch, "link", "set", outside, "up")
        address = f"{self.prefix}.{last_octet}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(self, name, namespace, address, outside)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Kill every process of every host and remove the namespaces (the veth pairs go with them)."""
        for host in self.hosts.values():
            for process in host.processes:
                if process.poll() is None:
                    try:
                        os.killpg(process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 10
            for process in host.processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            for pid in host.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for namespace in reversed(self._made):
            _ip("netns", "del", namespace, check=False)
        self._made.clear()


def _postgres_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries were not found under /usr/lib/postgresql/*/bin; install Debian's "
            "`postgresql` package (.ci/run does)."
        )
    return Path(found[-1]).parent


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL cluster in a host: the network URL prefix and the local socket folder."""

    url: str
    socket_dir: Path
    port: int

    def local_dsn(self, database: str) -> str:
        """A libpq DSN over the cluster's Unix socket (for the test's own checks, outside the hosts)."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={database}"


def start_postgres(host: Host, base: Path, *, port: int = 5432) -> Postgres:
    """initdb + pg_ctl start in ``host``, listening on its address (trust inside the lab's /24)."""
    bindir = _postgres_bindir()
    account = pwd.getpwnam("postgres")
    base.mkdir(parents=True, exist_ok=True)
    os.chown(base, account.pw_uid, account.pw_gid)
    data = base / "data"
    prefix = ["runuser", "-u", "postgres", "--"]
    done = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         "--no-sync"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr}")
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {host.lab.prefix}.0/24 trust\n")
    options = (
        f"-p {port} -k {base} -c listen_addresses={host.address} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    done = host.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
         "-o", options, "start"],
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed: {done.stdout}\n{done.stderr}")
    return Postgres(url=f"postgresql+psycopg://postgres@{host.address}:{port}", socket_dir=base, port=port)


def stop_postgres(base: Path) -> None:
    """pg_ctl stop (immediate) of the cluster under ``base``; its folder is removed."""
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(_postgres_bindir() / "pg_ctl"), "-D", str(base / "data"),
         "-m", "immediate", "-w", "stop"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    shutil.rmtree(base, ignore_errors=True)
