"""A server home for the analysis tests: the tiny imaging model with every finding positive."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import tiny_models
from pydicom.dataset import Dataset

from inference.config import Settings
from inference.security import Principal
from inference.services import Actor

PACS = Actor(Principal(subject="pacs-1", role="pacs", facility="F1"), client="127.0.0.1")
READER = Actor(Principal(subject="reader-1", role="radiologist", facility="F1"), client="127.0.0.1")
ORG_ROOT = "1.2.826.0.1.3680043.10.1453"


def all_positive_home(home: Path) -> Settings:
    """Settings of ``home`` with both tiny models seeded; every imaging finding positive (threshold 0.05)."""
    settings = Settings(
        home=home, database_url=None, mlflow_tracking_uri=None, model_watch_seconds=0, org_root=ORG_ROOT
    )
    work = home / "build"
    imaging = tiny_models.build_imaging_onnx(
        work / "imaging.onnx", thresholds=dict.fromkeys(tiny_models.FIVE_CODES, 0.05)
    )
    tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, imaging)
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(work / "triage.onnx")
    )
    return settings


def sr_values(payload: bytes) -> tuple[list[float], list[list[float]]]:
    """The SR's numeric values (probability, threshold per finding, in %) and box polylines, in order."""
    numbers: list[float] = []
    polylines: list[list[float]] = []

    def walk(items: list[Dataset]) -> None:
        for item in items:
            if "GraphicData" in item:
                polylines.append([float(v) for v in item.GraphicData])
            if "MeasuredValueSequence" in item:
                numbers.append(float(item.MeasuredValueSequence[0].NumericValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(pydicom.dcmread(io.BytesIO(payload)).ContentSequence)
    return numbers, polylines


def blocks(rgb: np.ndarray, n: int = 8) -> np.ndarray:
    """``n`` x ``n`` block means of an RGB picture (what the expectations keep of each picture)."""
    a = np.asarray(rgb, dtype=np.float64)
    ys = np.linspace(0, a.shape[0], n + 1).astype(int)
    xs = np.linspace(0, a.shape[1], n + 1).astype(int)
    return np.array(
        [
            [a[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].reshape(-1, a.shape[2]).mean(0) for j in range(n)]
            for i in range(n)
        ]
    )
