"""``python -m benchmarks.batch``: ``dxassist batch score`` on Dask versus the single-process path.

An archive of N studies (the seed chest radiograph ``seeds/studies/01_normal_pa_cr.dcm`` with fresh UIDs
per study, in nested folders) is scored twice, into two records of one temporary home:

- **single process**: the first K studies, one after another, through ``open_context`` and
  ``analyse_study`` in this process (the API's path without HTTP);
- **batch**: every study with ``dxassist batch score ARCHIVE --workers W`` (a local Dask cluster of W
  worker processes), read from its JSON summary.

Printed: studies per second of each, the ratio batch / single process, end to end (cluster start and
scan included) and while scoring (``scoring_seconds``). Never asserted: the workers share the machine's
cores with each other (and with whatever else runs), so on 2 cores the ratio says what the scheduling
costs more than what a cluster of separate hosts gains.

```
python -m benchmarks.batch                       # 500 studies, 2 workers, CxrNet (needs torch)
python -m benchmarks.batch --studies 100 --workers 2 --baseline 30
```
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import inference  # noqa: F401  (telemetry off before onnxruntime or mlflow is imported anywhere)
from benchmarks._model import build_imaging, build_tiny_imaging, quick_profile_input_size, seed_home

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "seeds" / "studies" / "01_normal_pa_cr.dcm"


def write_archive(root: Path, studies: int) -> list[Path]:
    """N one-film studies with fresh UIDs; returns the files."""
    from pydicom import dcmread

    ds = dcmread(SEED)
    files = []
    for i in range(studies):
        uid = f"2.25.{7_000_000_000 + i}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = uid, f"{uid}.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}.1.1"
        path = root / f"unit-{i % 4}" / f"{i:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


async def _single(settings: Any, files: list[Path]) -> float:
    from inference.security import Principal
    from inference.services import Actor, analyse_study, open_context

    actor = Actor(Principal(subject="bench", role="pacs", facility="BENCH"))
    async with open_context(settings) as ctx:
        # One warm-up study outside the timing (first session run, first SQLite write).
        await analyse_study(
            ctx=ctx, actor=actor, blobs=[files[0].read_bytes()], source="bench", accept_language=None
        )
        started = time.perf_counter()
        for path in files[1:]:
            await analyse_study(
                ctx=ctx, actor=actor, blobs=[path.read_bytes()], source="bench", accept_language=None
            )
        return time.perf_counter() - started


def run(studies: int, workers: int, baseline: int, input_size: int) -> dict[str, Any]:
    """Measure both paths on one archive; the figures as a dict."""
    from inference.config import Settings

    with tempfile.TemporaryDirectory(prefix="dxassist-bench-batch-") as tmp:
        work = Path(tmp)
        try:
            model = build_imaging(work / "build", input_size=input_size, seed=0)
        except ImportError:
            model = build_tiny_imaging(work / "build", input_size=input_size)
        home = work / "home"
        seed_home(home, model.path, work / "build")
        files = write_archive(work / "archive", studies)

        single = Settings(  # type: ignore[call-arg]
            home=home,
            mlflow_tracking_uri=None,
            model_watch_seconds=0,
            database_url=f"sqlite:///{work / 'single.db'}",
        )
        k = max(2, min(baseline, studies))
        single_seconds = asyncio.run(_single(single, files[:k]))
        single_rate = (k - 1) / single_seconds

        env = {k2: v for k2, v in os.environ.items() if not k2.startswith("DXASSIST_")}
        env |= {"DXASSIST_HOME": str(home), "DXASSIST_DATABASE_URL": f"sqlite:///{work / 'batch.db'}"}
        env.pop("MLFLOW_TRACKING_URI", None)
        command = [sys.executable, "-m", "inference.cli", "batch", "score", str(work / "archive")]
        command += ["--facility", "BENCH", "--workers", str(workers), "--json", "--no-progress"]
        started = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=3600)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"dxassist batch score failed ({proc.returncode}): {proc.stderr[-2000:]}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    scored = summary["scored"]
    batch_rate = scored / wall
    steady_rate = scored / summary["scoring_seconds"] if summary["scoring_seconds"] else 0.0
    return {
        "model": model.architecture,
        "input_size": input_size,
        "studies": studies,
        "workers": workers,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "single_process": {"studies": k - 1, "seconds": single_seconds, "studies_per_s": single_rate},
        "batch": {
            "scored": scored,
            "refused": summary["refused"],
            "failed": summary["failed"],
            "wall_seconds": wall,
            "scoring_seconds": summary["scoring_seconds"],
            "studies_per_s_end_to_end": batch_rate,
            "studies_per_s_scoring": steady_rate,
        },
        "ratio_end_to_end": batch_rate / single_rate,
        "ratio_scoring": steady_rate / single_rate,
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the batch benchmark."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.split("\n")[0])
    p.add_argument("--studies", type=int, default=500, help="studies in the archive (default 500)")
    p.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    p.add_argument(
        "--baseline", type=int, default=60, help="studies scored by the single process (default 60)"
    )
    p.add_argument(
        "--input-size", type=int, default=None, help="model input side (default: the quick profile's)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    size = args.input_size or quick_profile_input_size()
    figures = run(args.studies, args.workers, args.baseline, size)
    single, batch = figures["single_process"], figures["batch"]
    print(  # noqa: T201 - a benchmark's report
        f"model {figures['model']} @ {size}px, {figures['cores']} cores, load {figures['load_average']:.1f}\n"
        f"single process (analyse_study, sequential): {single['studies_per_s']:.2f} studies/s "
        f"over {single['studies']} studies\n"
        f"dxassist batch score, {args.workers} Dask workers: {batch['scored']} scored in "
        f"{batch['wall_seconds']:.1f} s end to end ({batch['studies_per_s_end_to_end']:.2f}/s), "
        f"{batch['scoring_seconds']:.1f} s scoring ({batch['studies_per_s_scoring']:.2f}/s)\n"
        f"ratio batch / single process: {figures['ratio_end_to_end']:.2f} end to end, "
        f"{figures['ratio_scoring']:.2f} while scoring (reported, no target)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
