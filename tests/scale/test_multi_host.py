"""Replicas on separate hosts behind a load balancer, one of them killed under load.

The hosts are Linux network namespaces on a private switch (``_lab.py``), each with its own address:

- ``db``: PostgreSQL (the patient record) and ``mlflow server`` (its own SQLite store and an artifact
  store it serves over HTTP);
- ``r1``, ``r2``: ``dxassist serve`` replicas, each with its own ``DXASSIST_HOME`` (model cache, audit
  anchor) and the same signing keys, both running the outbox worker;
- ``lb``: HAProxy (Debian's package), health checks on ``/readyz``;
- ``pacs``: a STOW-RS receiver, the replicas' only destination;
- ``client``: registers the models on the MLflow server and drives the load through the balancer.

Three phases: the load with one replica (``r2`` disabled in HAProxy), with two, and with two where ``r2``'s
host dies mid-load (every process SIGKILLed, its link cut). Then: every acknowledged result is in the record
exactly once and nothing else is; every output is delivered and stored once at the PACS (an object that
was on the wire when its sender died is sent again with the same SOP Instance UID: counted as a re-send);
the audit trail verifies; the surviving replica kept answering. The figures are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _dxassist_cli import DXASSIST, dxassist_env
from _lab import Host, Lab, Postgres, start_postgres, stop_postgres
from _loopback import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PYTHON = sys.executable
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT = Path(__file__).with_name("_lab_client.py")
RECEIVER = Path(__file__).with_name("_stow_receiver.py")
FACILITY = "hospital-a"
PHASE = {"studies": 10, "vitals": 10}
KILL_PHASE = {"studies": 24, "vitals": 24}


def _require_tools() -> None:
    missing = [tool for tool in ("ip", "runuser") if shutil.which(tool) is None]
    if not Path(HAPROXY).exists():
        missing.append("haproxy")
    if missing or os.geteuid() != 0:
        pytest.fail(
            "The multi-host test needs root, iproute2, util-linux and Debian's haproxy "
            f"(missing: {missing}); `.ci/run` installs them. It is never skipped."
        )


def _haproxy_config(lb: Host, replicas: list[Host], socket_path: Path) -> str:
    servers = "\n".join(
        f"    server {h.name} {h.address}:8000 check inter 500ms fall 2 rise 1" for h in replicas
    )
    return f"""global
    maxconn 512
    stats socket {socket_path} mode 600 level admin
    tune.bufsize 65536
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response
frontend api
    bind {lb.address}:8080
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


def _haproxy(socket_path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _server_up(socket_path: Path, name: str) -> bool:
    for line in _haproxy(socket_path, "show stat").splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == "replicas" and fields[1] == name:
            return fields[17] == "UP"
    return False


def _client(client: Host, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = client.run([PYTHON, str(CLIENT), *args], env=_env(), timeout=timeout)
    assert done.returncode == 0, f"client {args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def _wait_ready(client: Host, replica: Host, log: Path, timeout: float = 240) -> None:
    """Until the replica answers /readyz 200; fail at once, with its log, if its process ended."""
    (process,) = replica.processes
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"replica {replica.name} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        url = f"http://{replica.address}:8000/readyz"
        if client.run([PYTHON, str(CLIENT), "wait", url, "10"], env=_env(), timeout=60).returncode == 0:
            return
    pytest.fail(f"replica {replica.name} was not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DXASSIST_") and k != "MLFLOW_TRACKING_URI"
    }
    env.update(extra)
    return env


def _drive(
    client: Host, lb: Host, out: Path, tokens: dict[str, str], run: int, size: dict[str, int]
) -> list[str]:
    return [
        PYTHON, str(CLIENT), "drive", f"http://{lb.address}:8080", str(out), "--run", str(run),
        "--studies", str(size["studies"]), "--vitals", str(size["vitals"]), "--clients", "4",
        "--study-token", tokens["pacs"], "--vitals-token", tokens["clinician"],
    ]  # fmt: skip


def _phase(
    client: Host, lb: Host, work: Path, tokens: dict[str, str], run: int, size: dict[str, int]
) -> dict[str, Any]:
    out = work / f"phase{run}.json"
    done = client.run(_drive(client, lb, out, tokens, run, size), env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(out.read_text()))


def _rows(pg: Postgres, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.local_dsn("record")) as connection:
        return list(connection.execute(query).fetchall())


def test_two_replicas_behind_haproxy_survive_the_death_of_one_host(tmp_path: Path) -> None:
    _require_tools()
    pg_base = Path(tempfile.mkdtemp(prefix="dxassist-lab-pg-"))
    with Lab() as lab:
        db = lab.add_host("db", 2)
        r1 = lab.add_host("r1", 11)
        r2 = lab.add_host("r2", 12)
        lb = lab.add_host("lb", 20)
        pacs = lab.add_host("pacs", 30)
        client = lab.add_host("client", 40)
        try:
            _run_lab(tmp_path, pg_base, db, r1, r2, lb, pacs, client)
        finally:
            stop_postgres(pg_base)


def _run_lab(
    tmp_path: Path, pg_base: Path, db: Host, r1: Host, r2: Host, lb: Host, pacs: Host, client: Host
) -> None:
    started = time.monotonic()

    def stage(what: str) -> None:
        print(f"  [{time.monotonic() - started:6.1f} s] {what}", flush=True)

    logs = tmp_path / "logs"
    logs.mkdir()
    # -- the database host: PostgreSQL and the MLflow server
    pg = start_postgres(db, pg_base)
    with psycopg.connect(pg.local_dsn("postgres"), autocommit=True) as connection:
        connection.execute('CREATE DATABASE "record"')
    mlflow_dir = tmp_path / "mlflow"
    mlflow_dir.mkdir()
    tracking = f"http://{db.address}:5000"
    db.popen(
        [MLFLOW, "server", "--host", db.address, "--port", "5000", "--workers", "1",
         "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}", "--serve-artifacts",
         "--artifacts-destination", str(mlflow_dir / "artifacts"),
         "--allowed-hosts", f"{db.address}:5000,{db.address}"],
        env=_env(), log=logs / "mlflow.log", cwd=mlflow_dir,
    )  # fmt: skip
    # -- the PACS and the load balancer
    received = tmp_path / "received.txt"
    received.touch()
    pacs.popen(
        [PYTHON, str(RECEIVER), pacs.address, "8042", str(received)], env=_env(), log=logs / "pacs.log"
    )
    socket_path = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(_haproxy_config(lb, [r1, r2], socket_path))
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lb.popen([HAPROXY, "-db", "-f", str(config)], log=logs / "haproxy.log")
    # -- keys shared by the replicas, and the client's tokens
    keys_home = tmp_path / "keys-home"
    tokens = {}
    for role in ("pacs", "clinician"):
        done = subprocess.run(
            [str(DXASSIST), "token", "issue", "--subject", f"lab-{role}", "--role", role,
             "--facility", FACILITY],
            env=dxassist_env(keys_home), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        tokens[role] = done.stdout.strip()
    # -- models: registered and promoted on the MLflow server, over the network
    stage("PostgreSQL, MLflow server, PACS and HAProxy started")
    _client(client, "wait", f"{tracking}/health", "120")
    stage("MLflow answers")
    _client(client, "register", tracking, str(tmp_path / "models"))
    stage("models registered and promoted")
    # -- the replicas
    destinations = json.dumps(
        [
            {
                "name": "pacs",
                "kind": "stowrs",
                "url": f"http://{pacs.address}:8042/dicomweb",
                "timeout_seconds": 3,
            }
        ]
    )
    for replica in (r1, r2):
        home = tmp_path / f"home-{replica.name}"
        shutil.copytree(keys_home / "keys", home / "keys")
        env = _env(
            DXASSIST_HOME=str(home),
            DXASSIST_DATABASE_URL=f"{pg.url}/record",
            MLFLOW_TRACKING_URI=tracking,
            DXASSIST_DESTINATIONS=destinations,
            DXASSIST_DELIVERY_LEASE_SECONDS="6",
            DXASSIST_BUILD_LEASE_SECONDS="4",
            DXASSIST_DELIVERY_POLL_SECONDS="0.3",
            DXASSIST_DELIVERY_BACKOFF_SECONDS="0.5",
            DXASSIST_DELIVERY_BACKOFF_CAP_SECONDS="2",
            DXASSIST_RATE_LIMIT_PER_MINUTE="0",
            DXASSIST_MODEL_WATCH_SECONDS="0",
            DXASSIST_INTRA_OP_THREADS="1",
            DXASSIST_PREPROCESS_WORKERS="1",
        )
        replica.popen(
            [str(DXASSIST), "serve", "--host", replica.address, "--port", "8000"],
            env=env, log=logs / f"{replica.name}.log", cwd=home.parent,
        )  # fmt: skip
    for replica in (r1, r2):
        _wait_ready(client, replica, logs / f"{replica.name}.log")
    wait_until(
        lambda: _server_up(socket_path, "r1") and _server_up(socket_path, "r2"), timeout=30, what="HAProxy"
    )

    # -- phase 1: one replica (r2 taken out of the balancer), phase 2: two
    stage("both replicas ready behind HAProxy")
    # A warm-up through both (first requests load lazily imported code), not counted in the figures.
    warm = _phase(client, lb, tmp_path, tokens, 9, {"studies": 4, "vitals": 4})
    _haproxy(socket_path, "disable server replicas/r2")
    one = _phase(client, lb, tmp_path, tokens, 1, PHASE)
    _haproxy(socket_path, "enable server replicas/r2")
    wait_until(lambda: _server_up(socket_path, "r2"), timeout=30, what="r2 back in HAProxy")
    two = _phase(client, lb, tmp_path, tokens, 2, PHASE)

    stage("phases 1 and 2 done")
    # -- phase 3: r2's host dies mid-load
    out = tmp_path / "phase3.json"
    driver = client.popen(
        _drive(client, lb, out, tokens, 3, KILL_PHASE), env=_env(), log=logs / "driver3.log"
    )
    progress = out.with_suffix(".progress")
    total = KILL_PHASE["studies"] + KILL_PHASE["vitals"]
    wait_until(
        lambda: progress.exists() and len(progress.read_text().splitlines()) >= total // 3,
        timeout=300, what="a third of phase 3 acknowledged",
    )  # fmt: skip
    acked_before_kill = len(progress.read_text().splitlines())
    r2.kill()
    assert driver.wait(timeout=600) == 0, (logs / "driver3.log").read_text()[-3000:]
    three = json.loads(out.read_text())
    acked_after_kill = len(three["acknowledged"]) - acked_before_kill

    # -- every output delivered: the outbox drains on the survivor (r2's leases run out first)
    def drained() -> bool:
        # One statement, one snapshot: a build queues its outputs, then marks itself done in a second
        # transaction; two queries could miss its rows (outbox read first) and then see it done.
        counts = _rows(
            pg,
            "SELECT (SELECT count(*) FROM outbox WHERE state <> 'sent') "
            "+ (SELECT count(*) FROM output_builds WHERE state <> 'done')",
        )
        return bool(counts[0][0] == 0)

    stage("phase 3 done")
    wait_until(drained, timeout=120, what="the outbox and the output builds to drain")
    stage("outbox drained")

    # -- the record: every acknowledged result once, nothing else
    phases = (warm, one, two, three)
    for phase in phases:
        assert phase["failed"] == [], phase["failed"][:3]
    acknowledged = [entry for phase in phases for entry in phase["acknowledged"]]
    keys = {(e["kind"], e["key"]) for e in acknowledged}
    requests = sum(phase["requests"] for phase in phases)
    assert len(keys) == requests
    ids_by_key: dict[tuple[str, str], set[str]] = {}
    for entry in acknowledged:
        ids_by_key.setdefault((entry["kind"], entry["key"]), set()).add(entry["result_id"])
    assert all(len(ids) == 1 for ids in ids_by_key.values()), "a retried request got a second result"
    stored = Counter(row[0] for row in _rows(pg, "SELECT id FROM results"))
    acked_ids = {e["result_id"] for e in acknowledged}
    lost = len(acked_ids - set(stored))
    duplicated = sum(n - 1 for n in stored.values()) + len(set(stored) - acked_ids)
    per_study = _rows(
        pg,
        "SELECT s.study_instance_uid, count(r.id) FROM results r JOIN studies s ON s.id = r.study_id "
        "WHERE r.kind = 'imaging' GROUP BY s.study_instance_uid",
    )
    duplicated += sum(n - 1 for _, n in per_study)
    assert lost == 0
    assert duplicated == 0

    # -- the PACS: every object of the outbox stored once; one SR per imaging result
    objects = _rows(pg, "SELECT result_id, kind, object_uid FROM outbox WHERE destination = 'pacs'")
    receipts = received.read_text().split()
    stored_at_pacs = Counter(receipts)
    assert set(stored_at_pacs) == {uid for _, _, uid in objects}
    imaging_ids = {e["result_id"] for e in acknowledged if e["kind"] == "imaging"}
    reports = Counter(result_id for result_id, kind, _ in objects if kind == "sr")
    assert set(reports) == imaging_ids and set(reports.values()) == {1}
    resent = len(receipts) - len(stored_at_pacs)

    # -- the audit trail verifies, from the survivor
    verify = r1.run([str(DXASSIST), "audit", "verify"], env=_env(
        DXASSIST_HOME=str(tmp_path / "home-r1"), DXASSIST_DATABASE_URL=f"{pg.url}/record"
    ))  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # -- the survivor kept answering
    assert acked_after_kill > 0
    assert _rows(pg, "SELECT 1")  # the record still answers

    throughput = {n: len(p["acknowledged"]) / p["wall_seconds"] for n, p in (("1", one), ("2", two))}
    print(
        "\nmulti-host figures (2 replicas, HAProxy, PostgreSQL and MLflow on their own host; "
        f"{os.cpu_count()} CPU cores shared by every host):\n"
        f"  requests {requests}, attempts {sum(p['attempts'] for p in phases)}, "
        f"acknowledged {len(acknowledged)}, "
        f"lost {lost}, duplicated {duplicated}\n"
        f"  host r2 killed after {acked_before_kill} of {total} phase-3 requests; the survivor acknowledged "
        f"{acked_after_kill} more\n"
        f"  outputs: {len(objects)} objects delivered, {len(stored_at_pacs)} stored at the PACS, "
        f"{resent} re-sent after a lease ran out (same SOP Instance UID, stored once)\n"
        f"  throughput: 1 replica {throughput['1']:.1f} requests/s, "
        f"2 replicas {throughput['2']:.1f} requests/s "
        f"(ratio {throughput['2'] / throughput['1']:.2f})"
    )
