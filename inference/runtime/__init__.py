"""Serving runtime: ONNX Runtime sessions per served model, provider choice, micro-batching, hot swap.

Typical use (the server wires it in its lifespan)::

    host = ModelHost(settings.runtime, fetch=lambda name, alias: cache.fetch(client, name, alias))
    await host.start()
    with host.expecting_images():                      # a batch already waiting waits for this image
        tensor = prepare(...)                          # float32 [1, S, S]
        [out] = await host.score_images([tensor])
    risk = await host.score_vitals(values, present)    # float32 [F] each
    await host.stop()

Metrics (``prometheus_client`` default registry): ``dxassist_inference_seconds{model}``,
``dxassist_batch_size{model}``, ``dxassist_queue_depth{model}``, ``dxassist_model_swaps_total{model}``.
"""

from inference.runtime._allocator import configure_allocator
from inference.runtime._batcher import BatchHook, MicroBatcher
from inference.runtime._drift import (
    OOD_SIGNAL,
    DriftMonitor,
    DriftReference,
    DriftReport,
    SignalReference,
    compute_report,
    probability_signal,
)
from inference.runtime._errors import (
    ConfigurationError,
    InferenceFailed,
    InputRejected,
    ModelInvalid,
    ModelUnavailable,
    RuntimeErrorBase,
)
from inference.runtime._host import (
    IMAGING_MODEL,
    SERVED_ALIAS,
    SHADOW_ALIAS,
    TRIAGE_MODEL,
    Fetch,
    ModelHost,
    score_batch,
    score_triage,
)
from inference.runtime._meta import (
    ImagingMeta,
    MetadataKey,
    OodMeta,
    TriageMeta,
    encode_metadata,
    imaging_metadata,
    read_metadata,
    triage_metadata,
    write_metadata,
)
from inference.runtime._outputs import ImagingOutput, TriageOutput, calibrated_probability, is_assessable
from inference.runtime._providers import CPU, CUDA, available_providers, provider_options, select_providers
from inference.runtime._served import (
    LocalModelLike,
    ServedModel,
    load_served_model,
    make_session,
    serving_problem,
)
from inference.runtime._shadow import ShadowQueue, ShadowRefused

__all__ = [
    "CPU",
    "CUDA",
    "OOD_SIGNAL",
    "DriftMonitor",
    "DriftReference",
    "DriftReport",
    "compute_report",
    "probability_signal",
    "IMAGING_MODEL",
    "SERVED_ALIAS",
    "SHADOW_ALIAS",
    "ShadowQueue",
    "ShadowRefused",
    "SignalReference",
    "TRIAGE_MODEL",
    "BatchHook",
    "ConfigurationError",
    "Fetch",
    "ImagingMeta",
    "ImagingOutput",
    "InferenceFailed",
    "InputRejected",
    "LocalModelLike",
    "MetadataKey",
    "MicroBatcher",
    "ModelHost",
    "ModelInvalid",
    "ModelUnavailable",
    "OodMeta",
    "RuntimeErrorBase",
    "ServedModel",
    "TriageMeta",
    "TriageOutput",
    "available_providers",
    "calibrated_probability",
    "configure_allocator",
    "encode_metadata",
    "imaging_metadata",
    "is_assessable",
    "load_served_model",
    "make_session",
    "provider_options",
    "read_metadata",
    "score_batch",
    "score_triage",
    "select_providers",
    "serving_problem",
    "triage_metadata",
    "write_metadata",
]
