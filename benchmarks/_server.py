"""End to end through the real server: ``python -m inference.cli serve`` (``dxassist serve``) in a
subprocess on 127.0.0.1, a free port and the run's own DXASSIST_HOME; httpx clients on the same machine.

Request bodies are built before timing (one ``multipart/form-data`` body per request, each a new study:
the server answers a resent study from the record without analysing it), so the clients spend their time
waiting, not encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks._stats import Timing, percentile

BOUNDARY = "dxassist-benchmark-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
REQUEST_TIMEOUT = 180.0


class ServerFailed(RuntimeError):
    """The server did not become ready, or answered a benchmark request with an error."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RUN_RATE_PER_MINUTE = 1_000_000
"""The benchmark server's rate limit per token (the default, 1200 a minute with bursts of 300, is for
a site's many clients; a run's single reader asks for 440 pictures in a few seconds)."""


def server_env(home: Path) -> dict[str, str]:
    """The environment of the server (and of the in-process baselines): this run's home, nothing shared."""
    env = dict(os.environ)
    # Never let a benchmark write into a configured production database or registry.
    for key in ("DXASSIST_DATABASE_URL", "MLFLOW_TRACKING_URI", "DXASSIST_MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    env["DXASSIST_HOME"] = str(home)
    env["DXASSIST_ENVIRONMENT"] = "development"
    # One token sends every request of a run (hundreds of picture GETs in seconds): the limiter stays on,
    # so its cost is measured, but far above what a run sends, so it never answers 429 instead.
    env["DXASSIST_RATE_LIMIT_PER_MINUTE"] = str(RUN_RATE_PER_MINUTE)
    env["DXASSIST_RATE_LIMIT_BURST"] = str(RUN_RATE_PER_MINUTE)
    return env


@contextlib.contextmanager
def running_server(
    home: Path, log_path: Path, *, ready_timeout: float = 120.0, workers: int = 1
) -> Iterator[tuple[str, int]]:
    """Start the server (``--workers`` processes), wait for ``/readyz``; yield ``(base_url, pid)``; stop it
    (SIGTERM, then SIGKILL)."""
    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "inference.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=server_env(home), stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise ServerFailed(f"The server exited with code {proc.returncode}; see {log_path}.")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"The server was not ready within {ready_timeout:.0f} s; see {log_path}."
                    )
                time.sleep(0.25)
            yield base, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def multipart_body(data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="image.dcm"\r\n'
        "Content-Type: application/dicom\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _check(response: Any) -> int:
    if response.status_code != 201:
        raise ServerFailed(
            f"POST /v1/studies answered {response.status_code} (201 expected: a new study each time): "
            f"{response.text[:300]}"
        )
    return sum(1 for finding in response.json().get("findings", []) if finding.get("positive"))


def scrape(client: Any) -> str:
    """The server's ``GET /metrics`` (Prometheus text format)."""
    response = client.get("/metrics")
    if response.status_code != 200:
        raise ServerFailed(f"GET /metrics answered {response.status_code}")
    return str(response.text)


def latency(
    base: str,
    token: str,
    bodies: Sequence[bytes],
    *,
    warmup: int,
    heatmaps: list[str] | None = None,
    baseline: Callable[[], Any] | None = None,
    baseline_samples: list[float] | None = None,
    metrics: list[str] | None = None,
) -> Timing:
    """Sequential requests from one client: per-request latency (the first ``warmup`` not counted).

    ``heatmaps``, when given, receives every heatmap path of the measured results (not requested yet).
    ``baseline``, when given, is run and timed (into ``baseline_samples``) before each measured request:
    on a machine shared with other work, the ratio of two medians taken minutes apart measures the
    neighbours' load; interleaved, both sides see the same load.
    ``metrics``, when given, receives the server's ``/metrics`` right before the first measured request
    and right after the last (``benchmarks._stages`` reads the stage budget from them).
    """
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE}
    samples: list[float] = []
    positives: set[int] = set()
    first = math.nan
    with httpx.Client(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT) as client:
        for i, body in enumerate(bodies):
            if metrics is not None and i == warmup:
                metrics.append(scrape(client))
            if baseline is not None and baseline_samples is not None and i >= warmup:
                t0 = time.perf_counter()
                baseline()
                baseline_samples.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            response = client.post("/v1/studies", content=body)
            elapsed = time.perf_counter() - t0
            positives.add(_check(response))
            if i == 0:
                first = elapsed
            if i >= warmup:
                samples.append(elapsed)
                if heatmaps is not None:
                    heatmaps.extend(f["heatmap"] for f in response.json()["findings"] if f.get("heatmap"))
        if metrics:  # scraped before the first measured request
            metrics.append(scrape(client))
    extra: dict[str, Any] = {"positive_findings_per_result": sorted(positives)}
    if bodies:  # the first request of the run, not counted above (on a fresh server: the first it answers)
        extra["first_request_ms"] = round(first * 1000, 1)
    return Timing(tuple(samples), extra)


def picture_gets(
    base: str,
    token: str,
    paths: Sequence[str],
    *,
    baseline: Callable[[], Any] | None = None,
    metrics: list[str] | None = None,
) -> dict[str, Any]:
    """GET each heatmap path twice (the first draws the overlay, the second is served from the cache),
    and the display image of each result once; latencies of each kind. ``baseline`` is timed once per
    result, interleaved with the GETs (``baseline`` in the answer). ``metrics``, when given, receives the
    server's ``/metrics`` before the first GET and after the last. Then, outside that window, the heat
    layer of each heatmap once (``?layer=1``, what the readers' viewer lays over ``image.png``; drawn on
    demand too): ``layer`` in the answer."""
    import httpx

    first: list[float] = []
    again: list[float] = []
    images: list[float] = []
    loops: list[float] = []
    seen: set[str] = set()
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT
    ) as c:
        if metrics is not None:
            metrics.append(scrape(c))
        for path in paths:
            for samples in (first, again):
                t0 = time.perf_counter()
                response = c.get(path)
                samples.append(time.perf_counter() - t0)
                if response.status_code != 200 or response.headers.get("content-type") != "image/png":
                    raise ServerFailed(f"GET {path.split('/heatmaps/')[-1]} answered {response.status_code}")
            result = path.split("/heatmaps/")[0]
            if result not in seen:
                seen.add(result)
                if baseline is not None:
                    t0 = time.perf_counter()
                    baseline()
                    loops.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                if c.get(f"{result}/image.png").status_code != 200:
                    raise ServerFailed("GET image.png did not answer 200")
                images.append(time.perf_counter() - t0)
        if metrics is not None:
            metrics.append(scrape(c))
        layers: list[float] = []
        for path in paths:
            t0 = time.perf_counter()
            response = c.get(path, params={"layer": "1"})
            layers.append(time.perf_counter() - t0)
            if response.status_code != 200 or response.headers.get("content-type") != "image/png":
                raise ServerFailed(
                    f"GET {path.split('/heatmaps/')[-1]}?layer=1 answered {response.status_code}"
                )
    return {
        "first": Timing(tuple(first)).to_dict(),
        "cached": Timing(tuple(again)).to_dict(),
        "image": Timing(tuple(images)).to_dict(),
        "layer": Timing(tuple(layers)).to_dict(),
        **({"baseline": Timing(tuple(loops)).to_dict()} if loops else {}),
    }


def throughput(
    base: str, token: str, bodies: Sequence[bytes], *, clients: int, max_seconds: float
) -> dict[str, Any]:
    """``clients`` concurrent clients share ``bodies`` (one request each) until done or ``max_seconds``."""
    return asyncio.run(_throughput(base, token, list(bodies), clients, max_seconds))


async def _throughput(
    base: str, token: str, bodies: list[bytes], clients: int, max_seconds: float
) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + max_seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                response = await client.post("/v1/studies", content=body)
                _check(response)
            except (httpx.HTTPError, ServerFailed) as e:
                errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                continue
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "completed": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_seconds": round(wall, 3),
        "studies_per_second": round(len(latencies) / wall, 3) if wall > 0 else None,
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p95_ms": round(percentile(latencies, 95) * 1000, 1),
    }
