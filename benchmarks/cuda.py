"""The served models on CUDA against the CPU, in one process: same analyses, where each node ran, speed.

Run where ``onnxruntime-gpu`` and a GPU are (``pip install '.[gpu]'``)::

    python -m benchmarks.cuda --imaging cxr.onnx --triage triage.onnx --json out.json

``--images`` is an ``.npz`` of 2-D radiographs (any numeric type, MONOCHROME2); without it, ``--count``
training phantoms with planted findings are drawn (numpy and Pillow only, deterministic). For each
provider the models are loaded as the server loads them (``load_served_model``: the ONNX contract, the
sha256, ``DXASSIST_EXECUTION_PROVIDER``), then:

- every image is analysed with :func:`inference.analysis.analyse` through a started ``ModelHost`` (the
  server's path: micro-batched, 16 at a time) on CUDA, and with :func:`analyse_now` on the CPU; the report
  gives the largest differences of probabilities, OOD scores and boxes, and every finding whose verdict
  differs (only allowed within ``--tolerance`` of its threshold);
- the triage model scores random vital-sign vectors on both; largest logit and contribution differences;
- ONNX Runtime's profile of one batch tells which provider ran each node (a node left on the CPU costs two
  copies between the devices per run);
- the time of one ``session.run`` per batch size, and of one whole analysis, each as the median of
  repeated runs, printed as CUDA/CPU ratios (same process, same inputs).

Exit code 0 when every verdict agrees (beyond the tolerance) and no box moved more than one pixel, 1
otherwise, 2 for unusable arguments. Nothing here is asserted on time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

for _name, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
):
    os.environ.setdefault(_name, _value)

BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class _Local:
    """A model file as the server's cache hands it over (``LocalModelLike``)."""

    name: str
    version: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class _Settings:
    """The runtime settings the server would read (``HostSettings``)."""

    execution_provider: str
    intra_op_threads: int
    inter_op_threads: int = 1
    batch_max_size: int = 16
    batch_max_wait_ms: float = 5.0
    model_watch_seconds: float = 0.0


def _local(path: Path, name: str) -> _Local:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return _Local(name=name, version="1", sha256=digest, path=path)


def _instance(pixels: np.ndarray, n: int) -> Any:
    """A decoded radiograph of synthetic pixels (no patient: a made-up identifier, nothing else)."""
    from pydicom import Dataset

    from inference.dicom._model import Instance, PatientInfo

    pixels = np.ascontiguousarray(pixels)
    rows, columns = pixels.shape
    return Instance(
        sop_instance_uid=f"2.25.{n + 1}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
        study_instance_uid=f"2.25.{1000 + n}",
        series_instance_uid=f"2.25.{2000 + n}",
        modality="CR",
        view_position="PA",
        body_part="CHEST",
        laterality=None,
        patient=PatientInfo(patient_id=f"BENCH-{n}", issuer=None, name=None, birth_date=None, sex=None),
        accession_number=None,
        study_date=None,
        rows=rows,
        columns=columns,
        pixels=pixels,
        reduction=1,
        photometric="MONOCHROME2",
        bits_stored=16 if pixels.dtype.itemsize >= 2 else 8,
        pixel_representation=0,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        window_centers=(),
        window_widths=(),
        voi_lut_function="LINEAR",
        voi_lut=None,
        pixel_spacing=None,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        header=Dataset(),
    )


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _placements(path: Path, providers: list[Any], feeds: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Which provider ran each node of one run: ``{provider: {op type: count}}``, from ORT's profile."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    found: dict[str, Counter[str]] = {}
    for event in events:
        args = event.get("args", {})
        if (
            event.get("cat") == "Node"
            and "provider" in args
            and event.get("name", "").endswith("_kernel_time")
        ):
            found.setdefault(args["provider"], Counter())[args.get("op_name", "?")] += 1
    return {provider: dict(sorted(ops.items())) for provider, ops in sorted(found.items())}


def _box_shift(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> float:
    if a is None and b is None:
        return 0.0
    if a is None or b is None:
        return float("inf")
    return float(max(abs(x - y) for x, y in zip(a, b, strict=True)))


async def _host_analyses(
    instances: Sequence[Any], settings: _Settings, imaging: _Local, triage: _Local
) -> list[Any]:
    from inference.analysis import analyse
    from inference.runtime import ModelHost

    locals_ = {imaging.name: imaging, triage.name: triage}
    host = ModelHost(settings, fetch=lambda name, alias: locals_[name])
    await host.start()
    try:
        if not host.ready:
            raise SystemExit(f"The models did not load on {settings.execution_provider}: {host.problems()}")
        served = host.imaging
        return list(await asyncio.gather(*(analyse(i, served=served, host=host) for i in instances)))
    finally:
        await host.stop()


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Load, analyse, profile and time on both providers; the report as a dict."""
    import onnxruntime as ort

    from inference.analysis import analyse_now, prepare_input
    from inference.runtime import (
        CUDA,
        IMAGING_MODEL,
        TRIAGE_MODEL,
        load_served_model,
        provider_options,
        score_batch,
        score_triage,
    )

    imaging = _local(args.imaging, IMAGING_MODEL)
    triage = _local(args.triage, TRIAGE_MODEL)
    if args.images is not None:
        with np.load(args.images) as npz:
            images = [npz[k] for k in sorted(npz.files)]
    else:
        images = phantoms(args.count)
    instances = [_instance(image, n) for n, image in enumerate(images)]
    threads = args.threads or (os.cpu_count() or 1)
    cpu = _Settings("cpu", intra_op_threads=threads)
    gpu = _Settings(args.provider, intra_op_threads=threads)
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "threads": threads},
        "onnxruntime": ort.__version__,
        "providers_available": ort.get_available_providers(),
        "images": len(images),
        "shapes": sorted({tuple(int(s) for s in i.shape) for i in images}),
    }
    served = {
        "cpu": load_served_model(imaging, cpu, expected_kind="imaging"),
        "cuda": load_served_model(imaging, gpu, expected_kind="imaging"),
    }
    triage_served = {
        "cpu": load_served_model(triage, cpu, expected_kind="triage"),
        "cuda": load_served_model(triage, gpu, expected_kind="triage"),
    }
    report["session_providers"] = {k: v.session.get_providers() for k, v in served.items()}
    if args.provider == "cuda" and served["cuda"].provider != CUDA:
        raise SystemExit(f"The CUDA session runs on {served['cuda'].provider}; nothing to compare.")

    # -- the same analyses: CPU direct, CUDA through the server's micro-batched host --------------------
    reference = [analyse_now(i, served["cpu"]) for i in instances]
    on_gpu = asyncio.run(_host_analyses(instances, gpu, imaging, triage))
    worst_p = worst_ood = worst_box = 0.0
    disagreements: list[dict[str, Any]] = []
    assessable_differs = 0
    for n, (a, b) in enumerate(zip(reference, on_gpu, strict=True)):
        assessable_differs += int(a.ood.assessable != b.ood.assessable)
        if np.isfinite(a.ood.score) and np.isfinite(b.ood.score):
            worst_ood = max(worst_ood, abs(a.ood.score - b.ood.score))
        for fa, fb in zip(a.findings, b.findings, strict=True):
            worst_p = max(worst_p, abs(fa.probability - fb.probability))
            if fa.positive != fb.positive:
                near = abs(fa.probability - fa.threshold) <= args.tolerance
                disagreements.append(
                    {
                        "image": n,
                        "finding": fa.code,
                        "cpu": fa.probability,
                        "cuda": fb.probability,
                        "threshold": fa.threshold,
                        "within_tolerance": near,
                    }
                )
            elif fa.positive:
                worst_box = max(worst_box, _box_shift(fa.box, fb.box))
    positives = sum(f.positive for a in reference for f in a.findings)
    report["agreement"] = {
        "max_probability_difference": worst_p,
        "max_ood_score_difference": worst_ood,
        "max_box_shift_pixels": worst_box,
        "positive_findings_cpu": positives,
        "verdicts_differing": disagreements,
        "assessable_differing": assessable_differs,
    }

    rng = np.random.default_rng(7)
    features = len(triage_served["cpu"].triage_meta.features)
    worst_logit = worst_contribution = 0.0
    for _ in range(64):
        values = rng.normal(size=features).astype(np.float32)
        present = (rng.random(features) > 0.2).astype(np.float32)
        t_cpu = score_triage(triage_served["cpu"], values, present)
        t_gpu = score_triage(triage_served["cuda"], values, present)
        worst_logit = max(worst_logit, abs(t_cpu.logit - t_gpu.logit))
        worst_contribution = max(
            worst_contribution,
            max(abs(t_cpu.contributions[f] - t_gpu.contributions[f]) for f in t_cpu.contributions),
        )
    report["triage_agreement"] = {
        "max_logit_difference": worst_logit,
        "max_contribution_difference": worst_contribution,
    }

    # -- where the nodes ran ---------------------------------------------------------------------------
    tensors = np.stack([prepare_input(i, served["cpu"]).tensor for i in instances])
    batch = tensors[: min(8, len(tensors))]
    report["placements"] = {
        "imaging": _placements(
            imaging.path, provider_options(served["cuda"].session.get_providers()), {"image": batch}
        ),
    }

    # -- speed: one session.run per batch size, one whole analysis --------------------------------------
    timings: dict[str, dict[str, float]] = {}
    for size in BATCHES:
        stacked = np.ascontiguousarray(np.resize(tensors, (size, *tensors.shape[1:])), dtype=np.float32)
        row = {
            p: _median_seconds(partial(score_batch, served[p], stacked), args.repeats)
            for p in ("cpu", "cuda")
        }
        row["cuda_over_cpu"] = row["cuda"] / row["cpu"]
        timings[f"session_run_batch_{size}"] = row
    one = instances[0]
    row = {p: _median_seconds(partial(analyse_now, one, served[p]), args.repeats) for p in ("cpu", "cuda")}
    row["cuda_over_cpu"] = row["cuda"] / row["cpu"]
    timings["analysis_one_image"] = row
    report["seconds_median"] = timings
    report["ok"] = (
        worst_box <= 1.0 and assessable_differs == 0 and all(d["within_tolerance"] for d in disagreements)
    )
    return report


def phantoms(count: int) -> list[np.ndarray]:
    """Training phantoms with planted findings, as 12-bit films of 1024-1800 px (the CR sizes seen)."""
    from training.data._phantom import generate_phantom

    rng = np.random.default_rng(2026)
    return [
        np.round(generate_phantom(rng, size_range=(1024, 1800), prevalence=0.5).image * 4095).astype(
            np.uint16
        )
        for _ in range(count)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda", description=__doc__.splitlines()[0])
    parser.add_argument("--imaging", type=Path, help="the imaging model's ONNX file")
    parser.add_argument("--triage", type=Path, help="the triage model's ONNX file")
    parser.add_argument("--images", type=Path, help=".npz of 2-D radiographs (default: training phantoms)")
    parser.add_argument("--count", type=int, default=24, help="training phantoms analysed when no --images")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (median kept)")
    parser.add_argument("--threads", type=int, default=0, help="CPU session threads (default: every core)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="probability distance from a threshold within which CPU and CUDA may give different verdicts",
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--provider",
        choices=("cuda", "cpu"),
        default="cuda",
        help="what the 'cuda' side runs on ('cpu': a trial of this check on a machine without a GPU)",
    )
    args = parser.parse_args(argv)
    missing = [f"--{n}" for n in ("imaging", "triage") if getattr(args, n) is None]
    if missing:
        parser.error(f"{', '.join(missing)} required")
    for path in (args.imaging, args.triage, args.images):
        if path is not None and not path.is_file():
            print(f"No such file: {path}", file=sys.stderr)
            return 2
    report = compare(args)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
