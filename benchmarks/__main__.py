"""``python -m benchmarks [--quick]``: one run, every baseline and the server, ratios printed at the end."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import inference  # noqa: F401  (telemetry off before onnxruntime or mlflow is imported anywhere)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--quick", action="store_true", help="one input size, fewer repeats and requests (about 1.5 minutes)"
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="model input side S (default: the quick training profile's, what bootstrap serves)",
    )
    p.add_argument(
        "--extra-size", type=int, default=320, help="a second input size for model and loop figures (0: none)"
    )
    p.add_argument(
        "--positives",
        type=int,
        default=5,
        help="findings made positive on the benchmark image (default all five; the run also measures "
        "the same image with none positive)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random model weights")
    p.add_argument("--no-server", action="store_true", help="skip the end-to-end part")
    p.add_argument("--profile", action="store_true", help="sample the server with py-spy under 16 clients")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes (`dxassist serve --workers`) of the second 16-client run (default: the "
        "cores the benchmark may use; 1 skips it)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results (default benchmarks/results/latest.json)",
    )
    p.add_argument(
        "--no-readme", action="store_true", help="do not rewrite the figures in benchmarks/README.md"
    )
    return p.parse_args(argv)


def _say(message: str) -> None:
    print(message, flush=True)


def run_baselines(
    args: argparse.Namespace, work: Path, home: Path, files: list[Any], budget: Any, results: dict[str, Any]
) -> Any:
    from benchmarks import _bare, _model

    try:
        build = _model.build_imaging
        _model.quick_profile_input_size()
    except ImportError as e:  # a server-only install: no torch, no training package
        _say(f"training is not installed ({e}); measuring the tiny onnx.helper model instead of CxrNet")
        build = None
    sizes = [args.input_size] + (
        [args.extra_size] if args.extra_size and args.extra_size != args.input_size else []
    )
    explicit = next(f for f in files if f.syntax.key == "explicit")
    j2k = next((f for f in files if f.syntax.key == "j2k" and f.available), None)
    primary_pipe = None
    for size in sizes:
        _say(f"-- model at {size} px: export, ONNX Runtime, PyTorch eager")
        model = (
            build(work, input_size=size, seed=args.seed)
            if build
            else _model.build_tiny_imaging(work, input_size=size)
        )
        pipe = _bare.BarePipeline(model.path, model.preprocess)
        tensor = pipe.prepare(pipe.decode(explicit.data))
        logits = pipe.run(tensor)[0][0]
        temperature = 1.0
        probabilities = 1.0 / (1.0 + np.exp(-logits / temperature))
        if size == args.input_size:
            # The same network with every threshold above the image's probabilities: no finding positive.
            negative = work / f"none-positive-{size}.onnx"
            negative.write_bytes(model.path.read_bytes())
            results["run"]["none_positive_thresholds"] = _model.set_thresholds(
                negative, probabilities, positives=0
            )
            results["run"]["none_positive_model"] = str(negative)
        thresholds = _model.set_thresholds(model.path, probabilities, positives=args.positives)
        pipe = _bare.BarePipeline(model.path, model.preprocess)  # the session of the file as served
        entry: dict[str, Any] = {"architecture": model.architecture, "thresholds": thresholds}
        entry["ort"] = _bare.ort_timing(pipe, tensor, budget).to_dict()
        if model.module is not None:
            entry["torch"] = _bare.torch_timing(model.module, tensor, budget).to_dict()
        results["models"][str(size)] = entry
        if size == args.input_size:
            results["run"]["architecture"] = model.architecture
            results["run"]["session"] = pipe.session_options
            _model.seed_home(home, model.path, work)
            primary_pipe = pipe
        else:
            from benchmarks._stats import measure

            entry["loop"] = {}
            for f in (explicit, j2k):
                if f is not None and f.syntax.key not in results["decode_problems"]:
                    entry["loop"][f.syntax.key] = measure(
                        lambda f=f, pipe=pipe: pipe.loop(f.data),
                        warmup=budget.warmup,
                        repeats=budget.repeats,
                        max_seconds=budget.max_seconds,
                    ).to_dict()
    assert primary_pipe is not None
    for f in files:
        if not f.available or f.syntax.key in results["decode_problems"]:
            continue
        _say(f"-- {f.syntax.label}: decode, preprocess, bare loop")
        results["syntaxes"][f.syntax.key] = _bare.syntax_timings(
            primary_pipe, f, budget, positives=args.positives
        )
    return primary_pipe


def _loop_timing(pipe: Any, data: bytes, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe.loop(data)
        samples.append(time.perf_counter() - t0)
    return samples


def run_server(
    args: argparse.Namespace,
    home: Path,
    tmp: Path,
    files: list[Any],
    uids: Any,
    results: dict[str, Any],
    pipe: Any,
) -> None:
    """The server end to end. The bare loop is timed again, interleaved with the requests (one loop
    before each request, one per result before its heatmap GETs, a few right before and after each
    16-client run), so that each ratio compares figures taken under the same load."""
    from benchmarks import _files, _profile, _server, _stages
    from inference.config import Settings
    from inference.security import issue_token

    quick = args.quick
    # 40 measured sequential requests a side: with 14, two quiet runs a minute apart differed by 20 % on p50.
    latency_n, warmup = (6, 1) if quick else (42, 2)
    # 64 at 16 clients (4 each): with 32, every client sent 2 and the figure was mostly ramp-up.
    levels = {1: 3, 4: 4, 16: 16} if quick else {1: 8, 4: 16, 16: 64}
    max_seconds = 15.0 if quick else 30.0
    from benchmarks._stats import Timing

    server: dict[str, Any] = {
        "latency": {},
        "throughput": {},
        "paired_loop": {},
        "throughput_loop": {},
        "stages": {},
    }
    results["server"] = server
    chosen = [
        f
        for f in files
        if f.syntax.key in ("explicit", "j2k")
        and f.available
        and f.syntax.key not in results["decode_problems"]
    ]
    counter = 1
    token = issue_token(Settings(), subject="benchmark", role="pacs", facility="BENCHMARK")
    with _server.running_server(home, tmp / "server.log") as (base, pid):
        for f in chosen:
            _say(f"-- server, {f.syntax.label}: latency at 1 client")
            bodies = [
                _server.multipart_body(v)
                for v in _files.uid_variants(f.data, uids, range(counter, counter + latency_n))
            ]
            counter += latency_n
            heatmaps: list[str] = []
            loops: list[float] = []
            scrapes: list[str] = []
            timing = _server.latency(
                base,
                token,
                bodies,
                warmup=warmup,
                heatmaps=heatmaps,
                baseline=lambda f=f: pipe.loop(f.data),
                baseline_samples=loops,
                metrics=scrapes,
            )
            server["latency"][f.syntax.key] = timing.to_dict()
            server["paired_loop"][f.syntax.key] = Timing(tuple(loops)).to_dict()
            server["stages"][f.syntax.key] = _stages.from_scrapes(
                scrapes, requests=timing.n, client_mean=timing.mean, route="/v1/studies"
            )
            if f.syntax.key == "explicit" and heatmaps:
                _say(f"-- server, {f.syntax.label}: heatmap GETs ({len(heatmaps)}, each twice)")
                scrapes = []
                server["pictures"] = _server.picture_gets(
                    base, token, heatmaps, baseline=lambda f=f: pipe.loop(f.data), metrics=scrapes
                )
                first = server["pictures"]["first"]
                server["pictures"]["first_stages"] = _stages.from_scrapes(
                    scrapes,
                    requests=first["n"],
                    client_mean=(first["mean_ms"] or 0.0) / 1000,
                    outside_is=_stages.PICTURE_OUTSIDE,
                )
            server["throughput"][f.syntax.key] = {}
            for clients, n in levels.items():
                _say(f"-- server, {f.syntax.label}: throughput at {clients} clients ({n} studies at most)")
                bodies = [
                    _server.multipart_body(v)
                    for v in _files.uid_variants(f.data, uids, range(counter, counter + n))
                ]
                counter += n
                before = _loop_timing(pipe, f.data, 3) if clients == 16 else []
                server["throughput"][f.syntax.key][str(clients)] = _server.throughput(
                    base, token, bodies, clients=clients, max_seconds=max_seconds
                )
                if clients == 16:
                    after = _loop_timing(pipe, f.data, 3)
                    server["throughput_loop"][f.syntax.key] = Timing(tuple(before + after)).to_dict()
                del bodies
        if args.profile and chosen:
            f = chosen[0]
            wall = server["throughput"][f.syntax.key]["16"]["wall_seconds"]
            n = levels[16]
            bodies = [
                _server.multipart_body(v)
                for v in _files.uid_variants(f.data, uids, range(counter, counter + n))
            ]
            counter += n
            out = tmp / "py-spy.txt"
            spy = _profile.start(pid, out, wall * 0.9)
            if spy is None:
                results["profile"] = {"samples": 0, "note": "py-spy is not installed"}
            else:
                _say(f"-- server, {f.syntax.label}: profiling 16 clients with py-spy")
                time.sleep(1.0)  # py-spy attaches
                _server.throughput(base, token, bodies, clients=16, max_seconds=max_seconds)
                spy.wait(timeout=wall + 60)
                results["profile"] = _profile.summarise(out)
    explicit = next((f for f in chosen if f.syntax.key == "explicit"), None)
    workers = args.workers if args.workers is not None else len(os.sched_getaffinity(0))
    if explicit is not None and workers > 1:
        # The same server as `dxassist serve --workers N`: one process per core the host gives it.
        with _server.running_server(home, tmp / "server-workers.log", workers=workers) as (base, _pid):
            n = levels[16]
            _say(f"-- server, {workers} workers, {explicit.syntax.label}: 16 clients ({n} studies at most)")
            warm = [
                _server.multipart_body(v)
                for v in _files.uid_variants(explicit.data, uids, range(counter, counter + 2 * workers))
            ]
            counter += len(warm)
            _server.throughput(base, token, warm, clients=2 * workers, max_seconds=max_seconds)
            bodies = [
                _server.multipart_body(v)
                for v in _files.uid_variants(explicit.data, uids, range(counter, counter + n))
            ]
            counter += n
            before = _loop_timing(pipe, explicit.data, 3)
            measured = _server.throughput(base, token, bodies, clients=16, max_seconds=max_seconds)
            after = _loop_timing(pipe, explicit.data, 3)
            server["workers"] = {
                "workers": workers,
                "throughput": {explicit.syntax.key: {"16": measured}},
                "throughput_loop": {explicit.syntax.key: Timing(tuple(before + after)).to_dict()},
            }
            del bodies
    negative = results["run"].get("none_positive_model")
    if explicit is not None and negative:
        from benchmarks import _model

        _model.seed_version(home, Path(negative), "2")
        with _server.running_server(home, tmp / "server-none.log") as (base, _pid):
            _say(f"-- server, {explicit.syntax.label}, no finding positive: latency at 1 client")
            bodies = [
                _server.multipart_body(v)
                for v in _files.uid_variants(explicit.data, uids, range(counter, counter + latency_n))
            ]
            counter += latency_n
            loops = []
            server["latency_none_positive"] = {
                explicit.syntax.key: _server.latency(
                    base,
                    token,
                    bodies,
                    warmup=warmup,
                    baseline=lambda: pipe.loop(explicit.data),
                    baseline_samples=loops,
                ).to_dict()
            }
            server["paired_loop_none_positive"] = {explicit.syntax.key: Timing(tuple(loops)).to_dict()}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from benchmarks import _bare, _files, _machine, _report, _server

    started = time.perf_counter()
    budget = _bare.Budget(warmup=1, repeats=4, max_seconds=2.0) if args.quick else _bare.Budget(2, 12, 6.0)
    if args.input_size is None:
        try:
            from benchmarks._model import quick_profile_input_size

            args.input_size = quick_profile_input_size()
        except ImportError:
            args.input_size = 160
    if args.quick and args.extra_size == 320:
        args.extra_size = 0  # --quick measures one input size unless another is asked for
    results: dict[str, Any] = {
        "machine": _machine.describe(),
        "run": {
            "quick": args.quick,
            "input_size": args.input_size,
            "extra_size": args.extra_size,
            "positives": args.positives,
            "seed": args.seed,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "files": {},
        "missing_encoders": {},
        "decode_problems": {},
        "models": {},
        "syntaxes": {},
        "server": None,
        "ratios": [],
    }
    m = results["machine"]
    _say(
        f"dxassist benchmarks on {m['cpu_model']} ({m['cores']} cores, {m['ram_gib']} GiB), "
        f"load average {results['run']['load_average']}"
    )
    with tempfile.TemporaryDirectory(prefix="dxassist-bench-") as name:
        tmp = Path(name)
        home, work = tmp / "home", tmp / "work"
        work.mkdir()
        # The in-process baselines read the same settings as the server: same threads, same provider.
        for key in ("DXASSIST_DATABASE_URL", "MLFLOW_TRACKING_URI", "DXASSIST_MLFLOW_TRACKING_URI"):
            os.environ.pop(key, None)
        os.environ.update(_server.server_env(home))

        _say("-- writing the 2048 x 2048 12-bit study in each transfer syntax")
        uids = _files.UidTemplate()
        files = _files.encode_all(_files.chest_pixels(), uids)
        for f in files:
            if f.available:
                results["files"][f.syntax.key] = {
                    "label": f.syntax.label,
                    "bytes": len(f.data),
                    "encode_seconds": round(f.encode_seconds, 3),
                }
            else:
                results["missing_encoders"][f.syntax.key] = f.missing
                _say(f"   {f.syntax.label}: {f.missing}")
        _say("-- checking that every file decodes (in a child process, with a timeout)")
        results["decode_problems"] = _bare.probe_decode(
            files, args.input_size, timeout=15.0 if args.quick else 30.0
        )
        for key, why in results["decode_problems"].items():
            _say(f"   {key}: {why}")

        pipe = run_baselines(args, work, home, files, budget, results)
        if not args.no_server:
            try:
                run_server(args, home, tmp, files, uids, results, pipe)
            except Exception as e:  # report what failed and keep the baselines
                results["server"] = {**(results["server"] or {}), "error": f"{type(e).__name__}: {e}"}
                log = tmp / "server.log"
                if log.exists():
                    results["server"]["log_tail"] = log.read_text(errors="replace")[-2000:]
                _say(f"server part failed: {type(e).__name__}: {e}")
    results["run"]["seconds_total"] = round(time.perf_counter() - started, 1)
    results["ratios"] = _report.ratios(results)
    _say("")
    _say(_report.text_report(results))
    _report.write_json(results, args.json or _report.RESULTS)
    if not args.no_readme and args.json is None:
        if not _report.update_readme(results):
            _say("benchmarks/README.md has no figure markers; figures not written there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
