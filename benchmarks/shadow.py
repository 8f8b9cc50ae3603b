"""``python -m benchmarks.shadow``: what shadow scoring of a challenger adds to the champion's answers.

One process serves the same studies from two homes, in alternating blocks of sequential requests:
**A**, the champion alone; **B**, the same champion with a challenger (another version of the same
network) registered, so every answered study is also scored by the challenger on the shadow queue.
The figure is the ratio of B's median upload latency to A's (target: within noise of 1.0), with the
p95 of each and how many shadow outputs B filed and dropped. Printed, never asserted.

```
python -m benchmarks.shadow               # CxrNet as the quick profile builds it (needs training/torch)
python -m benchmarks.shadow --requests 40 --blocks 3
```
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import inference  # noqa: F401  (telemetry off before onnxruntime or mlflow is imported anywhere)
from benchmarks._files import as_new_study
from benchmarks._model import (
    IMAGING_NAME,
    build_imaging,
    build_tiny_imaging,
    quick_profile_input_size,
    seed_home,
)
from benchmarks._stats import percentile

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "seeds" / "studies" / "01_normal_pa_cr.dcm"


def _study() -> bytes:
    """The seed study with fresh UIDs (each request files a new result)."""
    return as_new_study(SEED)


def _models(work: Path, size: int) -> tuple[Path, Path, str]:
    try:
        champion = build_imaging(work / "a", input_size=size, seed=0)
        challenger = build_imaging(work / "b", input_size=size, seed=1)
    except ImportError:
        champion = build_tiny_imaging(work / "a", input_size=size)
        challenger = build_tiny_imaging(work / "b", input_size=size)
    return champion.path, challenger.path, champion.architecture


def _block(client: Any, headers: dict[str, str], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        body = _study()
        started = time.perf_counter()
        response = client.post("/v1/studies", files=[("files", ("s.dcm", body, "application/dicom"))],
                               headers=headers)  # fmt: skip
        samples.append(time.perf_counter() - started)
        if response.status_code != 201:
            raise RuntimeError(f"POST /v1/studies answered {response.status_code}: {response.text[:200]}")
    return samples


def run(requests: int, blocks: int, input_size: int) -> dict[str, Any]:
    """Measure A (champion alone) and B (champion + shadow challenger) in alternating blocks."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import seed_cache

    from inference.api import create_app
    from inference.config import Settings
    from inference.runtime._shadow import SHADOW_DONE, SHADOW_DROPPED
    from inference.security import issue_token

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with tempfile.TemporaryDirectory(prefix="dxassist-bench-shadow-") as tmp:
        work = Path(tmp)
        champion, challenger, architecture = _models(work / "build", input_size)
        homes = {}
        for label in ("A", "B"):
            home = work / label
            seed_home(home, champion, work / "build")
            if label == "B":
                seed_cache(home / "models", IMAGING_NAME, challenger, version="2", aliases=("challenger",))
            homes[label] = Settings(  # type: ignore[call-arg]
                home=home, mlflow_tracking_uri=None, model_watch_seconds=0, database_url=None
            )
        samples: dict[str, list[float]] = {"A": [], "B": []}
        done_before = SHADOW_DONE.labels(IMAGING_NAME, "2")._value.get()
        dropped_before = SHADOW_DROPPED.labels(IMAGING_NAME)._value.get()
        with TestClient(create_app(homes["A"])) as a, TestClient(create_app(homes["B"])) as b:
            clients = {"A": a, "B": b}
            headers = {
                k: {"Authorization": f"Bearer {issue_token(s, subject='bench', role='pacs', facility='F1')}"}
                for k, s in homes.items()
            }
            for label in ("A", "B"):
                _block(clients[label], headers[label], 3)  # warm-up
            for _ in range(blocks):
                for label in ("A", "B"):
                    samples[label] += _block(clients[label], headers[label], requests)
                    time.sleep(1.0)  # let B's shadow queue drain before the next block is timed
            deadline = time.monotonic() + 60
            while b.app.state.ctx.host.shadow.depth and time.monotonic() < deadline:
                time.sleep(0.2)
        filed = SHADOW_DONE.labels(IMAGING_NAME, "2")._value.get() - done_before
        dropped = SHADOW_DROPPED.labels(IMAGING_NAME)._value.get() - dropped_before
    a_med, b_med = statistics.median(samples["A"]), statistics.median(samples["B"])
    return {
        "model": architecture,
        "input_size": input_size,
        "requests": len(samples["A"]),
        "champion_alone": {"median_ms": a_med * 1e3, "p95_ms": percentile(samples["A"], 95) * 1e3},
        "with_challenger": {"median_ms": b_med * 1e3, "p95_ms": percentile(samples["B"], 95) * 1e3},
        "ratio_median": b_med / a_med,
        "ratio_p95": percentile(samples["B"], 95) / percentile(samples["A"], 95),
        "shadow_filed": int(filed),
        "shadow_dropped": int(dropped),
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the shadow-scoring benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shadow", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="sequential uploads per block")
    parser.add_argument("--blocks", type=int, default=3, help="blocks per variant, alternating A and B")
    parser.add_argument("--input-size", type=int, default=None, help="model input size (default: quick)")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)
    size = args.input_size or quick_profile_input_size()
    r = run(args.requests, args.blocks, size)
    print(f"shadow scoring: {r['model']}, input {r['input_size']} px, {r['requests']} uploads per variant")  # noqa: T201
    print(  # noqa: T201
        f"  A champion alone        median {r['champion_alone']['median_ms']:.1f} ms, "
        f"p95 {r['champion_alone']['p95_ms']:.1f} ms"
    )
    print(  # noqa: T201
        f"  B + challenger (shadow) median {r['with_challenger']['median_ms']:.1f} ms, "
        f"p95 {r['with_challenger']['p95_ms']:.1f} ms"
    )
    print(  # noqa: T201
        f"  ratio B/A: median {r['ratio_median']:.3f}, p95 {r['ratio_p95']:.3f} (target: within noise "
        f"of 1.0); shadow outputs filed {r['shadow_filed']}, dropped {r['shadow_dropped']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
