"""dxassist training: synthetic data, models, evaluation and ONNX export.

Importing the package switches off the telemetry of ONNX Runtime and MLflow before either is
imported anywhere in the process: the product never phones home.
"""

import os as _os

for _key, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
    # torch's OpenMP threads spin-wait by default, which collapses when the two cores are shared
    ("OMP_WAIT_POLICY", "PASSIVE"),
):
    _os.environ.setdefault(_key, _value)
