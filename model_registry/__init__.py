"""dxassist model registry: the only package that talks to MLflow.

Importing the package switches off the telemetry of ONNX Runtime and MLflow before either is
imported anywhere in the process: the product never phones home.
"""

import os as _os

for _key, _value in (
    ("ORT_DISABLE_TELEMETRY", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
):
    _os.environ.setdefault(_key, _value)

