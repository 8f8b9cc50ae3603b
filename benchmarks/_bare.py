"""Baselines measured in-process: ONNX Runtime, PyTorch eager, decode, preprocess and the bare loop.

The bare loop is the server's work without the server: ``read_study`` (as the server calls it, with
``target_size`` so JPEG 2000 decodes at reduced resolution) → ``prepare`` → one ``session.run`` of a
session built by ``inference.runtime.make_session`` from the same settings as the server. What the server
adds to it in-process is measured by calling ``inference.analysis`` itself (no copy of its steps here).
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._files import JPEG_LS_LOSSLESS, EncodedFile
from benchmarks._stats import Timing, measure


@dataclass(frozen=True)
class Budget:
    """Repeats and wall-time cap per measurement."""

    warmup: int
    repeats: int
    max_seconds: float


def _probe_target(data: bytes, target_size: int | None) -> None:
    from inference.config import Settings
    from inference.dicom import Limits, read_study

    read_study([data], limits=Limits.from_settings(Settings().limits), target_size=target_size)


def probe_decode(files: list[EncodedFile], target_size: int, timeout: float = 60.0) -> dict[str, str]:
    """Decode each file once in a forked process; return ``{key: problem}`` for those that fail or hang.

    A decoder that never returns would stall the whole benchmark (and a server worker): find it first.
    """
    problems: dict[str, str] = {}
    ctx = multiprocessing.get_context("fork")
    for f in files:
        if not f.available:
            continue
        for target in (target_size, None):
            proc = ctx.Process(target=_probe_target, args=(f.data, target), daemon=True)
            proc.start()
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()
                problems[f.syntax.key] = (
                    f"inference.dicom.read_study did not return within {timeout:.0f} s "
                    f"(target_size={target}); decoding hangs"
                )
                break
            if proc.exitcode != 0:
                problems[f.syntax.key] = f"inference.dicom.read_study failed (exit code {proc.exitcode})"
                break
    return problems


class BarePipeline:
    """The server's imaging steps, called directly."""

    def __init__(self, onnx_path: Any, preprocess: dict[str, Any]) -> None:
        from inference.config import Settings
        from inference.dicom import Limits
        from inference.dicom._decode import configure_decode_threads
        from inference.preprocess import PreprocessParams
        from inference.runtime import configure_allocator, make_session

        settings = Settings()  # the environment the server gets, so the same threads and provider
        self.session = make_session(onnx_path, settings.runtime)
        decode_threads = configure_decode_threads(settings.runtime.decode_threads)  # as the server does
        kept = configure_allocator(settings.runtime.allocator_keep_bytes)  # as the server does
        self.limits = Limits.from_settings(settings.limits)
        self.params = PreprocessParams.from_metadata(preprocess)
        self.input_size = self.params.input_size
        self.onnx_path = onnx_path
        self._served: Any = None
        self.session_options = {
            "intra_op_threads": settings.runtime.intra_op_threads,
            "inter_op_threads": settings.runtime.inter_op_threads,
            "decode_threads": decode_threads,
            "allocator_keep_bytes": settings.runtime.allocator_keep_bytes if kept else 0,
            "provider": self.session.get_providers()[0],
        }

    def decode(self, data: bytes, *, reduced: bool = True) -> Any:
        from inference.dicom import read_study

        return read_study([data], limits=self.limits, target_size=self.input_size if reduced else None)

    def prepare(self, study: Any) -> np.ndarray:
        from inference.preprocess import prepare

        return prepare(study.primary, self.params).tensor

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(["logits", "cam", "ood"], {"image": tensor[None]})

    def loop(self, data: bytes, *, reduced: bool = True) -> list[np.ndarray]:
        return self.run(self.prepare(self.decode(data, reduced=reduced)))

    def served(self) -> Any:
        """The same ONNX file loaded as the server loads it (``inference.runtime.load_served_model``)."""
        if self._served is None:
            from types import SimpleNamespace

            from inference.config import Settings
            from inference.runtime import load_served_model

            path = Path(self.onnx_path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            local = SimpleNamespace(name="cxr-findings", version="1", sha256=digest, path=path)
            self._served = load_served_model(local, Settings().runtime, expected_kind="imaging")
        return self._served

    def analysis(self, data: bytes) -> Any:
        """The server's imaging path in-process: decode, then ``inference.analysis.analyse_now``."""
        from inference.analysis import analyse_now

        return analyse_now(self.decode(data).primary, self.served())

    def explain(self, data: bytes) -> Callable[[], Any]:
        """What the analysis adds to the loop once the image is scored (``inference.analysis.explain``:
        display rendering, CAMs and boxes of the positive findings), as a function to time."""
        from inference.analysis import explain, prepare_input
        from inference.runtime import score_batch

        instance = self.decode(data).primary
        served = self.served()
        prepared = prepare_input(instance, served)
        [output] = score_batch(served, prepared.tensor[None])
        return lambda: explain(instance, prepared, output)


def ort_timing(pipe: BarePipeline, tensor: np.ndarray, budget: Budget) -> Timing:
    """(a) ``session.run`` at batch 1 on a preprocessed tensor."""
    return measure(
        lambda: pipe.run(tensor),
        warmup=budget.warmup + 3,
        repeats=budget.repeats * 3,
        max_seconds=budget.max_seconds,
    )


def torch_timing(module: Any, tensor: np.ndarray, budget: Budget, threads: int = 2) -> Timing:
    """(b) PyTorch eager, ``torch.inference_mode``, ``threads`` intra-op threads, batch 1."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.ascontiguousarray(tensor[None]))

    def run() -> None:
        with torch.inference_mode():
            module(x)

    try:
        timing = measure(
            run, warmup=budget.warmup + 3, repeats=budget.repeats * 3, max_seconds=budget.max_seconds
        )
    finally:
        torch.set_num_threads(previous)
    return Timing(timing.samples, {"threads": threads})


def syntax_timings(
    pipe: BarePipeline, f: EncodedFile, budget: Budget, *, positives: int = 0
) -> dict[str, Any]:
    """(c) and (d) for one file: loop and decode+preprocess (reduced path), full-resolution loop when it
    differs, decode alone and preprocess alone."""
    study = pipe.decode(f.data)
    reduction = study.primary.reduction
    shape = tuple(study.primary.pixels.shape)
    timed: dict[str, Callable[[], Any]] = {
        "loop": lambda: pipe.loop(f.data),
        "decode_preprocess": lambda: pipe.prepare(pipe.decode(f.data)),
        "decode": lambda: pipe.decode(f.data),
        "preprocess": lambda: pipe.prepare(study),  # alone, on the file decoded once
    }
    if reduction > 1:
        timed["loop_full_resolution"] = lambda: pipe.loop(f.data, reduced=False)
        timed["decode_preprocess_full_resolution"] = lambda: pipe.prepare(pipe.decode(f.data, reduced=False))
    out: dict[str, Any] = {
        "label": f.syntax.label,
        "transfer_syntax": f.syntax.uid,
        "file_bytes": len(f.data),
        "encode_seconds": round(f.encode_seconds, 3),
        "decoded_shape": list(shape),
        "reduction": reduction,
    }
    for name, fn in timed.items():
        out[name] = measure(
            fn, warmup=budget.warmup, repeats=budget.repeats, max_seconds=budget.max_seconds
        ).to_dict()
    if f.syntax.key in ("explicit", "j2k"):
        out["explain"] = measure(
            pipe.explain(f.data), warmup=budget.warmup, repeats=budget.repeats, max_seconds=budget.max_seconds
        ).to_dict()
        out["explain"]["positives"] = positives
        analysis = pipe.analysis(f.data)
        codes = list(analysis.cams)
        if codes:
            # Each finding in turn, as the server's first GETs ask for them: the cost follows how much of
            # the picture a finding's heat covers (a finding with no visible heat costs half of a diffuse
            # one), so timing the first finding alone understated the drawing the server does.
            turn = itertools.cycle(codes)
            out["overlay"] = measure(
                lambda: analysis.rendering.overlay_png(next(turn)),
                warmup=budget.warmup,
                repeats=max(budget.repeats, 3 * len(codes)),
                max_seconds=budget.max_seconds,
            ).to_dict()
            out["overlay"]["findings"] = len(codes)
    if f.syntax.uid == JPEG_LS_LOSSLESS:
        out["pydicom_decoders"] = _jpegls_plugins(f.data, budget)
    return out


def _jpegls_plugins(data: bytes, budget: Budget) -> dict[str, Any]:
    """JPEG-LS full decode per pydicom plugin: which one ``inference.dicom`` gets by default matters."""
    from io import BytesIO

    from pydicom import dcmread
    from pydicom.pixels.decoders.base import get_decoder

    ds = dcmread(BytesIO(data))
    decoder = get_decoder(JPEG_LS_LOSSLESS)
    out: dict[str, Any] = {}
    for plugin in decoder.available_plugins:
        out[plugin] = measure(
            lambda plugin=plugin: decoder.as_array(ds, index=0, decoding_plugin=plugin),
            warmup=1,
            repeats=budget.repeats,
            max_seconds=budget.max_seconds / 2,
        ).to_dict()
    return out
