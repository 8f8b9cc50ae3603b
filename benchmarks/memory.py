"""``python -m benchmarks.memory``: peak memory of the server and the listener under the largest inputs.

Each input goes to a freshly started process (tiny test models, ``tests/tiny_models.py``: the served
model adds its own weights on top): its peak resident set size (``VmHWM`` from ``/proc``) after the input
is printed with the idle figure of the same process and their ratio. The figures are the worst cases
stated in ``docs/security.md`` ("Memory bounds"); ``tests/pacs/test_pacs_memory.py`` holds the listener's.

- server (``dxassist serve``, ``POST /v1/studies``): a 700 MB upload (over
  ``DXASSIST_MAX_REQUEST_BYTES``, refused while streaming), a 300 MB file (under the request limit,
  over ``DXASSIST_MAX_INSTANCE_BYTES``: 413), a file just under that limit with more pixels than
  ``DXASSIST_MAX_PIXELS`` (413, the largest file the server reads before refusing it), the largest
  accepted radiograph (5016 x 5016, 16 bits: the most ``DXASSIST_MAX_PIXELS`` allows); then STOW-RS
  (``POST /dicomweb/studies``, sent chunked) with the same four inputs (``BENCH_CASES=STOW`` runs only
  those);
- listener (``dxassist listen``): a 699 MB instance sent by dcmtk's ``storescu`` (the association is
  aborted once the size limit is passed), a 256 MiB file with too many pixels (0xA700), the largest
  accepted radiograph, received and analysed.

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
from typing import Any

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


def _post_stow(base: str, token: str, path: Path) -> int:
    """POST one file as a STOW-RS ``multipart/related`` body, streamed from disk; return the HTTP status."""
    import httpx

    boundary = "dxassist-benchmark-stow"
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }  # no Content-Length (chunked): the limit is found while the body streams in
    try:
        response = httpx.post(
            f"{base}/dicomweb/studies", content=_chunks(path, head, tail), headers=headers, timeout=600.0
        )
    except httpx.HTTPError:  # the server may close the connection once it has refused the body
        return 413
    return response.status_code


def _server(work: Path, home: Path, side: int, make: Any) -> list[tuple[str, str, float]]:
    """One fresh server per input, so each peak is that input's alone."""
    from benchmarks._server import running_server
    from inference.config import Settings
    from inference.security import issue_token

    os.environ["DXASSIST_HOME"] = str(home)
    token = issue_token(Settings(), subject="benchmark", role="pacs", facility="BENCHMARK")
    cases = [
        ("700 MB upload", 18_700, "upload-700.dcm", _post_file),
        ("300 MB instance", 12_300, "upload-300.dcm", _post_file),
        ("256 MiB instance, 134 M pixels", 11_585, "upload-256.dcm", _post_file),
        (f"{side} x {side} radiograph", side, "largest.dcm", _post_file),
        ("700 MB STOW-RS body", 18_700, "stow-700.dcm", _post_stow),
        ("300 MB STOW-RS instance", 12_300, "stow-300.dcm", _post_stow),
        ("256 MiB STOW-RS instance, 134 M pixels", 11_585, "stow-256.dcm", _post_stow),
        (f"{side} x {side} radiograph by STOW-RS", side, "stow-largest.dcm", _post_stow),
    ]
    only = os.environ.get("BENCH_CASES")  # e.g. "STOW" to run only the cases whose label has it
    rows = []
    for label, case_side, name, post in cases:
        if only and only not in label:
            continue
        path = make(work / name, side=case_side)
        with running_server(home, work / "server.log") as (base, pid):
            idle = peak_rss_mb(pid)
            status = post(base, token, path)
            rows.append(("server", f"{label} (HTTP {status})", idle, peak_rss_mb(pid)))
        path.unlink()
    return rows


def _start_listener(work: Path, home: Path) -> tuple[subprocess.Popen[bytes], int]:
    from benchmarks._server import free_port

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
    with (work / "listener.log").open("ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    echo = ["echoscu", "-aet", BENCH_AET, "-aec", "DXASSIST", "-to", "2", "127.0.0.1", str(port)]
    deadline = time.monotonic() + 120
    while subprocess.run(echo, capture_output=True, check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"The listener did not start; see {work / 'listener.log'}.")
        time.sleep(0.3)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _listener(work: Path, home: Path, side: int, make: Any) -> list[tuple[str, str, float, float]]:
    """One fresh listener per input; the accepted one is waited for until its result is filed."""
    from inference.record import Record

    rows = []
    huge = make(work / "huge.dcm", side=18_700)
    proc, port = _start_listener(work, home)
    try:
        idle = peak_rss_mb(proc.pid)
        store = ["storescu", "-aet", BENCH_AET, "-aec", "DXASSIST", "127.0.0.1", str(port)]
        done = subprocess.run([*store, str(huge)], capture_output=True, check=False)
        outcome = "aborted while receiving" if done.returncode else "refused"
        rows.append(("listener", f"699 MB instance ({outcome})", idle, peak_rss_mb(proc.pid)))
    finally:
        _stop(proc)
        huge.unlink()
    over = make(work / "over-pixels.dcm", side=11_585)
    proc, port = _start_listener(work, home)
    try:
        idle = peak_rss_mb(proc.pid)
        store = ["storescu", "-aet", BENCH_AET, "-aec", "DXASSIST", "127.0.0.1", str(port)]
        done = subprocess.run([*store, str(over)], capture_output=True, check=False)
        rows.append(("listener", "256 MiB instance, 134 M pixels (0xA700)", idle, peak_rss_mb(proc.pid)))
    finally:
        _stop(proc)
        over.unlink()
    study = f"2.25.{int.from_bytes(os.urandom(15), 'big')}"
    largest = make(work / "largest-dimse.dcm", side=side, study=study)
    proc, port = _start_listener(work, home)
    try:
        idle = peak_rss_mb(proc.pid)
        store = ["storescu", "-aet", BENCH_AET, "-aec", "DXASSIST", "127.0.0.1", str(port)]
        subprocess.run([*store, str(largest)], capture_output=True, check=True)
        record = Record(f"sqlite:///{home / 'record.db'}")
        try:
            deadline = time.monotonic() + 300
            while record.results.latest_for_study(study_instance_uid=study) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("The largest radiograph was not analysed within 300 s.")
                time.sleep(0.5)
        finally:
            record.close()
        rows.append(
            ("listener", f"{side} x {side} radiograph (accepted, analysed)", idle, peak_rss_mb(proc.pid))
        )
    finally:
        _stop(proc)
    return rows


def main() -> int:
    """Run both processes and print the table."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "pacs")]
    import tiny_models
    from _pacs_dicom import write_large_cr

    from inference.config import LimitsSettings

    side = math.isqrt(LimitsSettings.model_fields["max_pixels"].default)
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="dxassist-bench-memory-") as tmp:
        work = Path(tmp)
        chosen = sys.argv[1:] or ["server", "listener"]
        for name, run in (("server", _server), ("listener", _listener)):
            if name not in chosen:
                continue
            home = work / f"home-{name}"
            home.mkdir()
            tiny_models.seed_both(home / "models", work / f"build-{name}")
            _say(f"measuring the {name}...")
            rows += run(work, home, side, write_large_cr)
    _say("")
    _say(f"{'process':<9} {'input':<46} {'idle':>7} {'peak RSS':>9} {'x idle':>7}")
    for process, step, idle, peak in rows:
        _say(f"{process:<9} {step:<46} {idle:>4.0f} MB {peak:>6.0f} MB {peak / idle:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
