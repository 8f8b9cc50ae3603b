"""``GET /healthz`` of the listener's metrics port: what Kubernetes probes instead of the DICOM port.

A TCP probe of the DICOM port succeeds while the process holds the socket, whatever became of the thread
that accepts associations or of the loop that analyses received studies; with DICOM TLS each probe is
also a failed handshake in the log. The exporter answers 200 while the process's check finds nothing
wrong and 503 with the reason otherwise; the listener's check fails when its acceptor has stopped or its
analysis loop has made no progress for ten minutes.
"""

from __future__ import annotations

import threading
import time

import httpx

from inference.dimse._listener import _STUCK_SECONDS, _Health
from inference.observability import MetricsExporter


def _get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10, trust_env=False)


def test_healthz_answers_what_the_process_check_says() -> None:
    problems: list[str | None] = [None]
    exporter = MetricsExporter("127.0.0.1", 0).start(health=lambda: problems[-1])
    try:
        healthy = _get(exporter.port, "/healthz")
        assert (healthy.status_code, healthy.text) == (200, "ok\n")
        problems.append("the DICOM acceptor has stopped: no association can start")
        sick = _get(exporter.port, "/healthz")
        assert sick.status_code == 503
        assert sick.text == "the DICOM acceptor has stopped: no association can start\n"
        assert _get(exporter.port, "/metrics").status_code == 200  # metrics are served either way
        assert _get(exporter.port, "/other").status_code == 404
    finally:
        exporter.stop()


def test_healthz_without_a_check_is_200_while_the_process_serves() -> None:
    exporter = MetricsExporter("127.0.0.1", 0).start()
    try:
        assert _get(exporter.port, "/healthz").status_code == 200
    finally:
        exporter.stop()


def test_the_listener_is_unhealthy_when_its_acceptor_stops_or_its_analysis_loop_is_stuck() -> None:
    stop = threading.Event()
    acceptor = threading.Thread(target=stop.wait, daemon=True)
    acceptor.start()
    health = _Health(acceptor)
    assert health.problem() is None
    # No progress of the analysis loop for longer than it may take.
    health.beat(time.monotonic() - _STUCK_SECONDS - 1)
    stuck = health.problem()
    assert stuck is not None and "analysis" in stuck
    health.beat(time.monotonic())
    assert health.problem() is None
    stop.set()
    acceptor.join(timeout=10)
    stopped = health.problem()
    assert stopped is not None and "acceptor" in stopped
