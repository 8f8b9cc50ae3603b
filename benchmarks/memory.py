"""``python -m benchmarks.memory``: peak memory of the server and the listener under the largest inputs.

Each process starts idle with the tiny test models (``tests/tiny_models.py``: the served model adds its
own weights on top), then gets, in this order, the largest inputs it refuses and the largest it accepts
with the default limits; its peak resident set size (``VmHWM`` from ``/proc``) is read after each step
and printed, with its ratio to the idle process measured in the same run. The figures are the worst cases
stated in ``docs/security.md`` ("Memory bounds"); ``tests/pacs/test_pacs_memory.py`` holds the listener's.

- server (``dxassist serve``): a 700 MB upload (over ``DXASSIST_MAX_REQUEST_BYTES``, refused while
  streaming), a 300 MB file (under the request limit, over ``DXASSIST_MAX_INSTANCE_BYTES``: 413), then
  the largest accepted radiograph (5016 x 5016, 16 bits: the most ``DXASSIST_MAX_PIXELS`` allows);
- listener (``dxassist listen``): a 699 MB instance sent by dcmtk's ``storescu`` (the association is
  aborted once the size limit is passed), then the largest accepted radiograph, received and analysed.

Linux only (``/proc``); needs dcmtk's ``storescu``. About two minutes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import inference  # noqa: F401  (telemetry off before onnxruntime or mlflow is imported anywhere)

ROOT = Path(__file__).resolve().parents[1]
BENCH_AET = "BENCH"


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def _say(message: str) -> None:
    print(message, flush=True)


def _chunks(path: Path, head: bytes, tail: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    yield head
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk
    yield tail


def _post_file(base: str, token: str, path: Path) -> int:
    """POST one file as a ``multipart/form-data`` upload, streamed from disk; return the HTTP status."""
    import httpx

    from benchmarks._server import BOUNDARY, CONTENT_TYPE

    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="image.dcm"\r\n'
        "Content-Type: application/dicom\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": CONTENT_TYPE,
        "Content-Length": str(len(head) + path.stat().st_size + len(tail)),
    }
    try:
        response = httpx.post(
            f"{base}/v1/studies", content=_chunks(path, head, tail), headers=headers, timeout=600.0
        )
    except httpx.HTTPError:  # the server may close the connection once it has refused the body
        return 413
    return response.status_code


def _server(work: Path, home: Path, side: int, make: object) -> list[tuple[str, str, float]]:
    from benchmarks._server import running_server
    from inference.config import Settings
    from inference.security import issue_token

    rows = []
    os.environ["DXASSIST_HOME"] = str(home)
    token = issue_token(Settings(), subject="benchmark", role="pacs", facility="BENCHMARK")
    with running_server(home, work / "server.log") as (base, pid):
        rows.append(("server", "idle, models loaded", peak_rss_mb(pid)))
        big = make(work / "upload-700.dcm", side=18_700)  # type: ignore[operator]
        status = _post_file(base, token, big)
        big.unlink()
        rows.append(("server", f"700 MB upload (refused, HTTP {status})", peak_rss_mb(pid)))
        over = make(work / "upload-300.dcm", side=12_300)  # type: ignore[operator]
        status = _post_file(base, token, over)
        over.unlink()
        rows.append(("server", f"300 MB instance (refused, HTTP {status})", peak_rss_mb(pid)))
        largest = make(work / "largest.dcm", side=side)  # type: ignore[operator]
        status = _post_file(base, token, largest)
        rows.append(("server", f"{side} x {side} radiograph (accepted, HTTP {status})", peak_rss_mb(pid)))
    return rows


def _listener(work: Path, home: Path, side: int, make: object) -> list[tuple[str, str, float]]:
    from benchmarks._server import free_port
    from inference.record import Record

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DXASSIST_", "MLFLOW_"))}
    env.update(
        {
            "DXASSIST_HOME": str(home),
            "DXASSIST_MODEL_WATCH_SECONDS": "0",
            "DXASSIST_DIMSE_NODES": json.dumps([{"ae_title": BENCH_AET, "facility": "BENCHMARK"}]),
            "DXASSIST_DIMSE_STABLE_SECONDS": "1",
        }
    )
    command = [sys.executable, "-m", "inference.cli", "listen", "--port", str(port)]
    rows = []
    with (work / "listener.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            echo = ["echoscu", "-aet", BENCH_AET, "-aec", "DXASSIST", "-to", "2", "127.0.0.1", str(port)]
            deadline = time.monotonic() + 120
            while subprocess.run(echo, capture_output=True, check=False).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"The listener did not start; see {work / 'listener.log'}.")
                time.sleep(0.3)
            rows.append(("listener", "idle, models loaded", peak_rss_mb(proc.pid)))
            store = ["storescu", "-aet", BENCH_AET, "-aec", "DXASSIST", "127.0.0.1", str(port)]
            huge = make(work / "huge.dcm", side=18_700)  # type: ignore[operator]
            done = subprocess.run([*store, str(huge)], capture_output=True, check=False)
            huge.unlink()
            outcome = "aborted while receiving" if done.returncode else "refused"
            rows.append(("listener", f"699 MB instance ({outcome})", peak_rss_mb(proc.pid)))
            study = f"2.25.{int.from_bytes(os.urandom(15), 'big')}"
            largest = make(work / "largest-dimse.dcm", side=side, study=study)  # type: ignore[operator]
            subprocess.run([*store, str(largest)], capture_output=True, check=True)
            rows.append(("listener", f"{side} x {side} radiograph received", peak_rss_mb(proc.pid)))
            record = Record(f"sqlite:///{home / 'record.db'}")
            try:
                deadline = time.monotonic() + 300
                while record.latest_study_result(study_instance_uid=study) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError("The largest radiograph was not analysed within 300 s.")
                    time.sleep(0.5)
            finally:
                record.close()
            rows.append(("listener", f"{side} x {side} radiograph analysed", peak_rss_mb(proc.pid)))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rows


def main() -> int:
    """Run both processes and print the table."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "pacs")]
    import tiny_models
    from _pacs_dicom import write_large_cr

    from inference.config import Settings

    side = math.isqrt(Settings.model_fields["max_pixels"].default)
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="dxassist-bench-memory-") as tmp:
        work = Path(tmp)
        for name, run in (("server", _server), ("listener", _listener)):
            home = work / f"home-{name}"
            home.mkdir()
            tiny_models.seed_both(home / "models", work / f"build-{name}")
            _say(f"measuring the {name}...")
            rows += run(work, home, side, write_large_cr)
    idle = {process: mb for process, step, mb in rows if step.startswith("idle")}
    _say("")
    _say(f"{'process':<9} {'after':<48} {'peak RSS':>9} {'x idle':>7}")
    for process, step, mb in rows:
        _say(f"{process:<9} {step:<48} {mb:>6.0f} MB {mb / idle[process]:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
