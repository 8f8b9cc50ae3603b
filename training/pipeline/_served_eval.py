"""The validation and test splits scored by the server's own imaging path, so calibration, thresholds and
the reported figures are those of what the server computes.

Training preprocesses its arrays with ``inference.preprocess`` and scores them with PyTorch; the server
decodes the file with ``inference.dicom.read_study`` (a JPEG 2000 file at a reduced resolution level),
prepares it with ``inference.analysis`` (a large film block-averaged once for both the model input and
the display) and runs the exported ONNX file in ONNX Runtime. Small differences between the two paths
are expected, and a threshold sits where a few probabilities change sides. So after export each
validation and test file is read and prepared exactly as a request is (``read_study`` then
``inference.analysis.prepare_input`` with the model loaded by ``inference.runtime.load_served_model``)
and scored by the exported graph in ONNX Runtime (``inference.runtime.score_batch``): the temperature and
the operating thresholds are fitted on those validation logits, the test figures computed from those test
probabilities. Data sets that are not DICOM files (the public PNG sets, prepared by
``inference.preprocess.prepare_pixels``, the server's function for pixels) have their prepared arrays
scored by the same ONNX Runtime session.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

#: Images scored per ONNX Runtime call (the server's micro-batcher groups requests the same way).
BATCH = 32


@dataclass(frozen=True)
class _Artifact:
    """The exported file as the server's loader wants it (``inference.runtime.LocalModelLike``)."""

    name: str
    version: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class ServedOutputs:
    """The exported graph's outputs for one split, as the server computes them.

    Attributes:
        logits: ``[N, K]`` raw logits in label order (calibrated probability: sigmoid(logit / T)).
        ood: ``[N]`` the graph's out-of-distribution score.
        cams: ``[N, K, h, w]`` class activation maps at model resolution.
        from_files: True when each image was read from its DICOM file by ``read_study`` and prepared by
            ``inference.analysis``; False when the data set's prepared arrays were scored.
    """

    logits: NDArray[np.float64]
    ood: NDArray[np.float64]
    cams: NDArray[np.float32]
    from_files: bool


def load_for_evaluation(onnx_path: Path, labels: Sequence[str], *, model_name: str) -> Any:
    """The exported file loaded by the server's loader (``ServedModel``), with the server's settings.

    Raises:
        ValueError: The exported model's labels differ from ``labels``.
    """
    from inference.config import RuntimeSettings
    from inference.runtime import load_served_model

    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    # The server's session settings (environment first, as the server reads them).
    served = load_served_model(
        _Artifact(model_name, "evaluation", digest, onnx_path), RuntimeSettings(), expected_kind="imaging"
    )
    if tuple(served.imaging_meta.labels) != tuple(labels):
        raise ValueError(
            f"The exported model's labels {list(served.imaging_meta.labels)} differ from {list(labels)}."
        )
    return served


def _file_tensors(served: Any, root: Path, files: Sequence[str]) -> Iterator[NDArray[np.float32]] | None:
    """The model input of each file as a request's is made; None when a file is not DICOM."""
    if not files or not all(name.lower().endswith(".dcm") for name in files):
        return None
    from inference.analysis import prepare_input
    from inference.config import LimitsSettings
    from inference.dicom import Limits, read_study

    limits = Limits.from_settings(LimitsSettings())
    size = served.imaging_meta.input_size

    def tensors() -> Iterator[NDArray[np.float32]]:
        for name in files:
            study = read_study([(root / name).read_bytes()], limits=limits, target_size=size)
            yield prepare_input(study.primary, served).tensor

    return tensors()


def served_outputs(
    served: Any,
    *,
    root: Path | None,
    files: Sequence[str],
    arrays: NDArray[np.float32],
) -> ServedOutputs:
    """Score one split with the exported graph in ONNX Runtime, inputs prepared as the server prepares them.

    Args:
        served: The exported model as loaded by :func:`load_for_evaluation`.
        root: The data set's folder (``files`` are relative to it); None when it has none.
        files: The split's image files, in the order of ``arrays``.
        arrays: The split's prepared arrays ``[N, 1, S, S]`` (scored when the files are not DICOM, or
            when the server would refuse one of them).
    """
    from inference.analysis import AnalysisError
    from inference.dicom import DicomRejected
    from inference.runtime import score_batch

    def score(tensors: Iterator[NDArray[np.float32]]) -> ServedOutputs:
        logits, ood, cams = [], [], []
        batch: list[NDArray[np.float32]] = []

        def flush() -> None:
            for output in score_batch(served, np.stack(batch)):
                logits.append(np.asarray(output.logits, dtype=np.float64))
                ood.append(float(output.ood_score))
                cams.append(np.asarray(output.cam, dtype=np.float32))
            batch.clear()

        for tensor in tensors:
            batch.append(tensor)
            if len(batch) == BATCH:
                flush()
        if batch:
            flush()
        k = len(served.imaging_meta.labels)
        return ServedOutputs(
            logits=np.stack(logits) if logits else np.zeros((0, k)),
            ood=np.asarray(ood, dtype=np.float64),
            cams=np.stack(cams) if cams else np.zeros((0, k, 1, 1), dtype=np.float32),
            from_files=True,
        )

    from_files = _file_tensors(served, root, files) if root is not None else None
    if from_files is not None:
        try:
            return score(from_files)
        except (DicomRejected, AnalysisError) as e:
            # The server would refuse one of these files; the split is scored from its arrays instead.
            logger.warning("A file of the split is refused by the served path (%s): %s", type(e).__name__, e)
    outputs = score(iter(np.ascontiguousarray(arrays, dtype=np.float32)))
    return ServedOutputs(logits=outputs.logits, ood=outputs.ood, cams=outputs.cams, from_files=False)
