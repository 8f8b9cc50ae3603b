"""`dxassist serve --workers N`: several server processes on one port that answer as one server (the
real console script in a subprocess; uvicorn's supervisor, prometheus_client's multiprocess mode)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import tiny_models
from _dxassist_cli import serving_process

from benchmarks._files import as_new_study
from inference.config import Settings
from inference.security import issue_token

SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "studies"
UPLOADS = 8


def _study() -> bytes:
    """A seed radiograph as a new study (new UIDs, pixels untouched)."""
    return as_new_study(next(p for p in sorted(SEEDS.glob("*.dcm")) if "_ll_" not in p.name))


def _workers(supervisor: int) -> list[int]:
    """The server processes uvicorn's supervisor runs (spawned interpreters), by pid."""
    children: list[int] = []
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return sorted(pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes())


def _listening_sockets(pid: int, port: int) -> set[int]:
    """Inodes of the TCP sockets listening on ``port`` that process ``pid`` holds."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.add(int(fields[9]))
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                held.add(int(target[8:-1]))
    return listening & held


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _count(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _fresh_get(url: str, path: str, headers: dict[str, str]) -> httpx.Response:
    """One request on a connection of its own, so the kernel may give it to any worker."""
    with httpx.Client(base_url=url, headers=headers, timeout=60, trust_env=False) as client:
        return client.get(path)


@pytest.mark.timeout(900)
def test_workers_answer_as_one_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    token = issue_token(Settings(home=home), subject="router", role="pacs", facility="F1")
    auth = {"Authorization": f"Bearer {token}"}
    burst = 3 * UPLOADS + 4
    with serving_process(
        home,
        tmp_path / "serve.log",
        args=("--workers", "2"),
        DXASSIST_RATE_LIMIT_BURST=str(burst),
        DXASSIST_RATE_LIMIT_PER_MINUTE="1",  # a token back a minute: the test sees the burst only
    ) as (url, supervisor):
        # Each worker listens on a socket of its own (SO_REUSEPORT): the kernel spreads connections. The
        # server answers as soon as one worker is up; the other binds when its models are loaded.
        port = int(url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while True:
            workers = _workers(supervisor.pid)
            sockets = [_listening_sockets(pid, port) for pid in workers]
            if len(workers) == 2 and all(sockets):
                break
            assert time.monotonic() < deadline, f"not every worker listens: {workers} {sockets}"
            time.sleep(0.3)
        assert all(len(held) == 1 for held in sockets) and sockets[0] != sockets[1], sockets
        assert not _listening_sockets(supervisor.pid, port)
        environ = dict(
            item.decode().split("=", 1)
            for item in Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        shared = Path(environ["DXASSIST_WORKERS_DIR"])
        assert shared.is_dir()
        # Thread pools left at "every core" get each worker's share of the cores.
        share = str(max(1, len(os.sched_getaffinity(0)) // 2))
        assert environ["DXASSIST_INTRA_OP_THREADS"] == environ["DXASSIST_DECODE_THREADS"] == share
        before = {pid: _cpu_ticks(pid) for pid in workers}

        # Studies from 4 concurrent clients, each on connections of its own: every one is analysed and filed.
        def upload(blob: bytes) -> int:
            with httpx.Client(base_url=url, headers=auth, timeout=120, trust_env=False) as client:
                files = [("files", ("s.dcm", blob, "application/dicom"))]
                return client.post("/v1/studies", files=files).status_code

        # Both processes work. The kernel spreads connections by a hash of their addresses, so all of
        # one round may go to one worker by chance (2 in 2^8): a round more, three at most.
        uploaded, started = 0, time.monotonic()
        for _round in range(3):
            with ThreadPoolExecutor(4) as pool:
                studies = [_study() for _ in range(UPLOADS)]
                assert list(pool.map(upload, studies)) == [201] * UPLOADS
            uploaded += UPLOADS
            used = {pid: _cpu_ticks(pid) - before[pid] for pid in workers}
            if all(ticks > 0 for ticks in used.values()):
                break
        assert all(ticks > 0 for ticks in used.values()), used

        # /metrics adds up the workers: every scrape, whoever answers it, counts all the uploads.
        for _ in range(6):
            metrics = _fresh_get(url, "/metrics", {}).text
            assert _count(metrics, "dxassist_requests_total", route="/v1/studies", status="201") == uploaded
            assert _count(metrics, "dxassist_stage_seconds_count", stage="inference") == uploaded

        # One rate limit for the server: `burst` requests of this token pass, whichever worker takes them
        # (the uploads above drew theirs already).
        statuses = [_fresh_get(url, "/v1/models", auth).status_code for _ in range(2 * burst)]
        refilled = int((time.monotonic() - started) // 60)  # a token a minute since the first upload
        assert burst - uploaded <= statuses.count(200) <= burst - uploaded + refilled, statuses
        assert set(statuses) == {200, 429}

        # A worker that does not answer for a while (stopped here for 8 s, as a starved one would be) is not
        # taken for hung: uvicorn's default of 5 s killed busy workers.
        os.kill(workers[0], signal.SIGSTOP)
        try:
            time.sleep(8)  # the stimulus itself: longer than uvicorn's default, shorter than ours
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed by the supervisor: asserted below
                os.kill(workers[0], signal.SIGCONT)
        assert _fresh_get(url, "/readyz", {}).status_code == 200
        assert _workers(supervisor.pid) == workers

        # A worker that dies is replaced; the server keeps answering and the totals keep its requests.
        busiest = max(used, key=lambda pid: used[pid])
        os.kill(busiest, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:
            current = _workers(supervisor.pid)
            if len(current) == 2 and busiest not in current:
                break
            assert time.monotonic() < deadline, f"no worker replaced the killed one: {current}"
            time.sleep(0.5)
        assert [_fresh_get(url, "/v1/models", {}).status_code for _ in range(6)] == [401] * 6
        metrics = _fresh_get(url, "/metrics", {}).text
        assert _count(metrics, "dxassist_requests_total", route="/v1/studies", status="201") == uploaded

    # Stopped: the supervisor ended its workers and removed the folder they shared.
    assert supervisor.returncode == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in current)
    assert not shared.exists()


def test_workers_do_not_start_without_their_record(tmp_path: Path) -> None:
    import subprocess

    from _dxassist_cli import DXASSIST, dxassist_env, free_port

    env = {
        **dxassist_env(tmp_path / "home"),
        "DXASSIST_DATABASE_URL": f"postgresql+psycopg://dxassist:s3cret-pw@127.0.0.1:{free_port()}/record",
    }
    done = subprocess.run(
        [str(DXASSIST), "serve", "--port", str(free_port()), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "cannot be opened" in done.stderr and "127.0.0.1" in done.stderr  # which database, and why
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
