"""The test split scored by the server's own imaging path, so the reported figures are the served model's.

Training preprocesses its arrays with ``inference.preprocess`` and scores them with PyTorch; the server
decodes the file with ``inference.dicom.read_study`` (a JPEG 2000 file at a reduced resolution level),
prepares it with ``inference.analysis`` (a large film block-averaged once for both the model input and
the display) and runs the exported ONNX file in ONNX Runtime. Small differences between the two paths
are expected; the figures a hospital is told are the ones of the path it runs. So after export, each
test file is read and analysed exactly as a request would be (``read_study`` then
``inference.analysis.analyse_now`` with the model loaded by ``inference.runtime.load_served_model``),
and the test metrics are computed from those probabilities. Data sets that are not DICOM files (the
public PNG sets go through ``inference.preprocess.prepare_pixels``) keep the training path's figures.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Artifact:
    """The exported file as the server's loader wants it (``inference.runtime.LocalModelLike``)."""

    name: str
    version: str
    sha256: str
    path: Path


def served_probabilities(
    onnx_path: Path, root: Path, files: Sequence[str], labels: Sequence[str], *, model_name: str
) -> NDArray[np.float64] | None:
    """Calibrated probabilities ``[N, K]`` of the ``files`` (relative to ``root``) as the server gives them.

    Returns None when a file is not DICOM or one the server refuses (the set is then scored by the
    training path only, and the run says so).

    Raises:
        ValueError: The exported model's labels differ from ``labels``.
    """
    if not files or not all(name.lower().endswith(".dcm") for name in files):
        return None
    from inference.analysis import ImageUnusable, analyse_now
    from inference.config import LimitsSettings, RuntimeSettings
    from inference.dicom import DicomRejected, Limits, read_study
    from inference.runtime import load_served_model

    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    # The server's session and input settings (environment first, as the server reads them).
    served = load_served_model(
        _Artifact(model_name, "evaluation", digest, onnx_path), RuntimeSettings(), expected_kind="imaging"
    )
    meta = served.imaging_meta
    if tuple(meta.labels) != tuple(labels):
        raise ValueError(f"The exported model's labels {list(meta.labels)} differ from {list(labels)}.")
    limits = Limits.from_settings(LimitsSettings())
    out = np.empty((len(files), len(labels)), dtype=np.float64)
    for row, name in enumerate(files):
        try:
            study = read_study([(root / name).read_bytes()], limits=limits, target_size=meta.input_size)
            analysis = analyse_now(study.primary, served)
        except (DicomRejected, ImageUnusable) as e:
            # The server would refuse this file; the split cannot be scored as served.
            logger.warning("Test file %s is refused by the served path (%s): %s", name, type(e).__name__, e)
            return None
        scores = {finding.code: finding.probability for finding in analysis.findings}
        out[row] = [scores[code] for code in labels]
    return out
