"""Errors of the serving runtime: one root and a handful of children the API maps to HTTP statuses."""

from __future__ import annotations

from inference.errors import InferenceError


class RuntimeErrorBase(InferenceError):
    """Root of every error raised by :mod:`inference.runtime`."""


class ModelUnavailable(RuntimeErrorBase):
    """No model is loaded for the request, or the runtime is stopped or overloaded (HTTP 503)."""


class ModelInvalid(RuntimeErrorBase, ValueError):
    """A model file breaks the ONNX artifact contract (inputs, outputs or ``dxassist.*`` metadata)."""


class ConfigurationError(RuntimeErrorBase, ValueError):
    """The runtime settings ask for something this machine cannot do (e.g. CUDA without a GPU)."""


class InputRejected(RuntimeErrorBase, ValueError):
    """A tensor handed to the runtime has the wrong shape, type or non-finite values."""


class InferenceFailed(RuntimeErrorBase):
    """ONNX Runtime failed while running a model on inputs that had passed validation."""
