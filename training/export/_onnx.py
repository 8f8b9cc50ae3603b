"""Export a torch module to a single-file ONNX model the server reads everything from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import TrainingError


class ParityError(TrainingError, AssertionError):
    """ONNX Runtime and PyTorch disagree on the exported model beyond the tolerance."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    sha256: str
    parity_max_abs_diff: float
    parity_passed: bool
    opset: int


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(
    module: Any,
    example_inputs: Mapping[str, np.ndarray],
    output_names: Sequence[str],
    path: Path,
    *,
    metadata: Mapping[str, str],
    parity_outputs: Sequence[str],
    tolerance: float = 1e-4,
    opset: int = 18,
) -> ExportReport:
    """Export ``module`` (in eval mode) with named inputs/outputs and a dynamic batch axis.

    ``metadata`` is what ``inference.runtime.imaging_metadata`` / ``triage_metadata`` made (the
    artifact contract's keys, values as stored). The model is checked with
    ``onnx.checker`` and run in ONNX Runtime on ``example_inputs``; the outputs named in
    ``parity_outputs`` must match PyTorch within ``tolerance`` (max absolute difference) or
    :class:`ParityError` is raised.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from inference.runtime import write_metadata

    module = module.eval()
    names = list(example_inputs)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(example_inputs[n])) for n in names)
    dynamic_axes = {n: {0: "batch"} for n in [*names, *output_names]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            module,
            tensors,
            str(path),
            input_names=names,
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
        reference = module(*tensors)
    if isinstance(reference, torch.Tensor):
        reference = (reference,)
    reference_np = {n: t.detach().cpu().numpy() for n, t in zip(output_names, reference, strict=True)}

    model = onnx.load(str(path))
    write_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path), save_as_external_data=False)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {n: np.ascontiguousarray(example_inputs[n]) for n in names}
    got = dict(zip(output_names, session.run(list(output_names), feeds), strict=True))
    diff = max(float(np.max(np.abs(got[n] - reference_np[n]))) for n in parity_outputs)
    report = ExportReport(
        path=path,
        sha256=_sha256(path),
        parity_max_abs_diff=diff,
        parity_passed=diff <= tolerance,
        opset=opset,
    )
    if not report.parity_passed:
        raise ParityError(f"ONNX Runtime differs from PyTorch by {diff:.2e} (tolerance {tolerance:.0e}).")
    return report


def restamp_metadata(report: ExportReport, metadata: Mapping[str, str]) -> ExportReport:
    """Replace the ``metadata_props`` of an exported file (the graph is untouched, so parity still holds).

    The imaging pipeline fits the temperature and the thresholds on what the exported graph computes on
    the server's inputs, which exists only after export; this writes them into the file.

    Returns:
        The report with the file's new sha256.
    """
    import dataclasses

    import onnx

    from inference.runtime import write_metadata

    model = onnx.load(str(report.path))
    write_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(report.path), save_as_external_data=False)
    return dataclasses.replace(report, sha256=_sha256(report.path))
