"""``python -m benchmarks.refusals``: how fast hostile input is refused, as ratios to a normal request.

The tests assert *that* each hostile input is refused (and terminates, under a pytest-timeout); how
fast is measured here, against a baseline run in the same process, and printed, never asserted:

- every file of pydicom's local test corpus through ``read_instance``, against reading one seed study;
- a 16 MiB deflate bomb, against the same seed study;
- the HTTP bombs of ``tests/security/test_security_hostile_input.py`` (upload and STOW-RS), against the
  upload and STOW-RS of a normal chest image;
- a model fetch that falls back to the cache because the registry is unreachable, against a fetch from
  the cache alone.

Figures depend on the machine and its load; the ratios are what to compare between runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import inference  # noqa: F401  (telemetry off before onnxruntime or mlflow is imported anywhere)

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "seeds" / "studies" / "01_normal_pa_cr.dcm"


def _time(call: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls (exceptions are part of the work being timed)."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            call()
        except Exception:  # noqa: BLE001 - a refusal is the expected outcome here
            pass
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _say(message: str) -> None:
    print(message, flush=True)


def _test_helpers() -> None:
    """The hostile inputs are built by the tests' own factories, so both use the same bytes."""
    for folder in ("tests", "tests/inference/dicom", "tests/security"):
        path = str(ROOT / folder)
        if path not in sys.path:
            sys.path.insert(0, path)


def corpus_and_bomb(repeats: int) -> None:
    """pydicom's corpus and a deflate bomb through ``read_instance``, against one seed study."""
    from _dicom_factory import deflate_bomb
    from pydicom.data import DATA_ROOT

    from inference.dicom import Limits, read_instance

    limits = Limits(max_instance_bytes=64 << 20, max_pixels=16 << 20, max_instances=8)
    seed = SEED.read_bytes()
    baseline = _time(lambda: read_instance(seed, limits=limits, target_size=128), repeats)
    _say(f"baseline: read_instance of a seed study  {baseline * 1e3:8.1f} ms")
    files = sorted(p for p in (Path(DATA_ROOT) / "test_files").rglob("*") if p.is_file())
    ratios = []
    for path in files:
        data = path.read_bytes()
        seconds = _time(lambda data=data: read_instance(data, limits=limits, target_size=128), 1)
        ratios.append((seconds / baseline, path.name))
    ratios.sort(reverse=True)
    values = [r for r, _ in ratios]
    _say(
        f"pydicom corpus ({len(files)} files) / baseline: median {statistics.median(values):.2f}, "
        f"max {values[0]:.2f} ({ratios[0][1]})"
    )
    for ratio, name in ratios[1:4]:
        _say(f"    next slowest: {name} {ratio:.2f}")
    bomb = deflate_bomb(16 << 20)
    small = Limits(max_instance_bytes=1 << 20, max_pixels=1 << 20, max_instances=1)
    refused = _time(lambda: read_instance(bomb, limits=small), repeats)
    _say(f"deflate bomb, 16 MiB inflated, refused / baseline: {refused / baseline:.2f}")


def http_bombs(repeats: int) -> None:
    """The HTTP hostile inputs (upload + STOW-RS) against a normal image sent the same way."""
    from _security_env import TestClient, chest_dicom, new_study_uid, related_body, seeded_env
    from test_security_hostile_input import HOSTILE, LIMITED

    from inference.api import create_app

    with tempfile.TemporaryDirectory(prefix="dxassist-bench-") as tmp:
        env = seeded_env(Path(tmp), **LIMITED)
        with TestClient(create_app(env.settings)) as client:
            headers = env.headers("pacs", facility="F1")

            def send(blob: bytes) -> None:
                client.post("/v1/studies", files=[("files", ("b.dcm", blob, "application/dicom"))],
                            headers=headers)  # fmt: skip
                body, content_type = related_body([("application/dicom", blob)])
                client.post("/dicomweb/studies", content=body,
                            headers={**headers, "Content-Type": content_type})  # fmt: skip

            def normal() -> None:
                study = new_study_uid()
                send(chest_dicom(study=study, sop=f"{study}.1"))

            baseline = _time(normal, repeats)
            _say(f"baseline: upload + STOW-RS of a normal image  {baseline * 1e3:8.1f} ms")
            for name, (build, _status, _code) in HOSTILE.items():
                blob = build()
                ratio = _time(lambda blob=blob: send(blob), repeats) / baseline
                _say(f"{name:<36} refused / baseline: {ratio:.2f}")


def offline_fallback(repeats: int) -> None:
    """A fetch with the registry down against a fetch from the cache alone (no registry asked)."""
    import tiny_models

    import model_registry

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with tempfile.TemporaryDirectory(prefix="dxassist-bench-") as tmp:
        cache_dir = Path(tmp) / "models"
        tiny_models.seed_both(cache_dir, Path(tmp) / "build")
        cache = model_registry.ModelCache(cache_dir)
        cached = _time(lambda: cache.fetch("cxr-findings", "champion", client=None), repeats)
        down = _time(
            lambda: cache.fetch(
                "cxr-findings", "champion", client=model_registry.RegistryClient("http://127.0.0.1:9")
            ),
            repeats,
        )
        _say(f"baseline: cached model fetch  {cached * 1e3:8.1f} ms")
        _say(f"fetch with the registry unreachable / cached fetch: {down / cached:.1f}")


def main(argv: list[str] | None = None) -> int:
    """Run every part and print its ratios."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.refusals", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeats", type=int, default=5, help="calls per median (default 5)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the refusals log as they should; only the figures are printed
    warnings.simplefilter("ignore")  # pydicom warns about the oddities of its own test corpus
    _test_helpers()
    corpus_and_bomb(args.repeats)
    http_bombs(max(1, args.repeats // 2))
    offline_fallback(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
