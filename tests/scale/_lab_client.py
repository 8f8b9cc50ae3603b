"""The client host of the multi-host test: registers the models and drives the load through the balancer.

Run in the client namespace by the test (``ip netns exec ... python _lab_client.py COMMAND ...``):

- ``register TRACKING_URI WORKDIR``: builds the tiny models of ``tests/tiny_models.py``, logs and
  registers them on the MLflow server over HTTP and promotes them through the gate (``champion``);
- ``wait URL SECONDS``: polls ``URL`` until it answers 200;
- ``drive BASE OUT ...``: sends studies (``POST /v1/studies``) and vital signs (``POST /v1/vitals`` with an
  ``Idempotency-Key``) from several threads, retrying what got no answer as a client of a real
  hospital would (the same study, the same key), and writes what was acknowledged to ``OUT`` (JSON).
  A line per acknowledged request goes to ``OUT.progress`` as it happens.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
# The repository first: tests/ holds a folder named inference (the tests of the package), which would
# otherwise shadow the installed package as a namespace package when the install is editable.
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent), str(HERE.parent / "inference" / "api")]

RETRY_STATUSES = frozenset({502, 503, 504})


def _register(args: argparse.Namespace) -> None:
    import tiny_models

    import model_registry

    client = model_registry.RegistryClient(args.tracking_uri)
    versions = tiny_models.register_both(
        client, Path(args.workdir), profile="multi-host test", git_commit="feedbeef"
    )
    for name, version in versions.items():
        print(f"{name} version {version} is champion")


def _wait(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(args.url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{args.url} did not answer 200 within {args.seconds} s")


def _vitals(i: int) -> dict[str, Any]:
    return {
        "patient": {"identifier": f"IPP-LAB-{i % 11:03d}", "sex": "female" if i % 2 else "male"},
        "observed_at": f"2026-11-22T{8 + (i // 3600) % 12:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "respiratory_rate": 14 + i % 12,
        "spo2": 91 + i % 8,
        "on_oxygen": False,
        "systolic_bp": 100 + i % 40,
        "heart_rate": 70 + i % 50,
        "temperature": 36.5 + (i % 20) / 10,
        "consciousness": "A",
    }


def _drive(args: argparse.Namespace) -> None:
    from _api_dicom import chest_dicom, uid

    out = Path(args.out)
    progress = out.with_suffix(".progress")
    lock = threading.Lock()
    acknowledged: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    attempts_total = [0]
    client = httpx.Client(base_url=args.base, timeout=60, trust_env=False)

    def send(kind: str, i: int) -> None:
        if kind == "imaging":
            study = uid(args.run, i)
            body = chest_dicom(
                study=study, sop=f"{study}.1.1", size=64, seed=i, patient_id=f"IPP-LAB-{i % 11:03d}"
            )
            key = study
            request = {"files": (f"{i}.dcm", body, "application/dicom")}
            headers = {"Authorization": f"Bearer {args.study_token}"}
        else:
            key = f"lab-{args.run}-{i}"
            headers = {"Authorization": f"Bearer {args.vitals_token}", "Idempotency-Key": key}
        for attempt in range(1, 41):
            with lock:
                attempts_total[0] += 1
            try:
                if kind == "imaging":
                    response = client.post("/v1/studies", files=request, headers=headers)
                else:
                    response = client.post(
                        "/v1/vitals", json=_vitals(args.run * 100_000 + i), headers=headers
                    )
            except httpx.TransportError as e:
                last = type(e).__name__
            else:
                if response.status_code in (200, 201):
                    entry = {
                        "kind": kind,
                        "key": key,
                        "result_id": response.json()["result_id"],
                        "attempts": attempt,
                    }
                    with lock:
                        acknowledged.append(entry)
                        with progress.open("a") as handle:
                            handle.write(f"{kind} {key}\n")
                    return
                if response.status_code not in RETRY_STATUSES:
                    with lock:
                        failed.append(
                            {
                                "kind": kind,
                                "key": key,
                                "status": response.status_code,
                                "body": response.text[:300],
                            }
                        )
                    return
                last = f"HTTP {response.status_code}"
            time.sleep(min(2.0, 0.1 * attempt))
        with lock:
            failed.append({"kind": kind, "key": key, "status": None, "body": last})

    jobs = [("imaging", i) for i in range(args.studies)] + [("triage", i) for i in range(args.vitals)]
    jobs.sort(key=lambda job: (job[1], job[0]))  # interleave studies and vital signs
    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        for future in [pool.submit(send, kind, i) for kind, i in jobs]:
            future.result()
    wall = time.monotonic() - started
    client.close()
    out.write_text(
        json.dumps(
            {
                "requests": len(jobs),
                "attempts": attempts_total[0],
                "acknowledged": acknowledged,
                "failed": failed,
                "wall_seconds": wall,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("register")
    p.add_argument("tracking_uri")
    p.add_argument("workdir")
    p.set_defaults(handler=_register)
    p = sub.add_parser("wait")
    p.add_argument("url")
    p.add_argument("seconds", type=float)
    p.set_defaults(handler=_wait)
    p = sub.add_parser("drive")
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--run", type=int, required=True, help="makes this run's UIDs and keys unique")
    p.add_argument("--studies", type=int, default=20)
    p.add_argument("--vitals", type=int, default=20)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--study-token", required=True)
    p.add_argument("--vitals-token", required=True)
    p.set_defaults(handler=_drive)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
