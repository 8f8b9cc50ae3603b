"""Training pipelines: data → model → evaluation → ONNX export → model card, one function per served model."""

from training.data import DatasetError
from training.pipeline._imaging import train_imaging
from training.pipeline._outcome import TrainingOutcome
from training.pipeline._profiles import IMAGING_PROFILES, ConfigError, ImagingConfig
from training.pipeline._triage import TRIAGE_PROFILES, TriageConfig, train_triage

__all__ = [
    "IMAGING_PROFILES",
    "TRIAGE_PROFILES",
    "ConfigError",
    "DatasetError",
    "ImagingConfig",
    "TrainingOutcome",
    "TriageConfig",
    "train_imaging",
    "train_triage",
]
