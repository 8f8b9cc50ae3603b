"""Prometheus metrics of the serving runtime (process-wide default registry).

- ``dxassist_inference_seconds{model}``: histogram of the wall time of one ``session.run`` (a whole batch).
- ``dxassist_batch_size{model}``: histogram of the number of requests scored by one ``session.run``.
- ``dxassist_queue_depth{model}``: gauge of the imaging requests waiting for the micro-batcher.
- ``dxassist_model_swaps_total{model}``: counter of hot swaps to a new version (first load included).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INFERENCE_SECONDS = Histogram(
    "dxassist_inference_seconds",
    "Wall time of one ONNX Runtime run (one batch), in seconds.",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "dxassist_batch_size",
    "Requests scored together in one ONNX Runtime run.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_DEPTH = Gauge(
    "dxassist_queue_depth",
    "Requests waiting for the micro-batcher.",
    ["model"],
    multiprocess_mode="livesum",  # with `serve --workers`: the workers' queues added up
)
MODEL_SWAPS = Counter("dxassist_model_swaps", "Times a new model version was put into service.", ["model"])
