"""Execution provider choice: CUDA when asked for (or available under ``auto``), CPU otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from inference.runtime._errors import ConfigurationError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

ProviderPreference = Literal["auto", "cpu", "cuda"]


def available_providers() -> list[str]:
    """Execution providers of the installed ONNX Runtime (CUDA only with onnxruntime-gpu)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def select_providers(preference: str, available: Sequence[str] | None = None) -> list[str]:
    """Choose the execution providers for a session, in priority order.

    Args:
        preference: ``auto`` (CUDA when ONNX Runtime offers it, else CPU), ``cpu`` or ``cuda``.
        available: providers to choose from; those of the installed ONNX Runtime when ``None``.

    Returns:
        ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` or ``["CPUExecutionProvider"]``. CPU is
        always last so that operators CUDA lacks still run.

    Raises:
        ConfigurationError: ``cuda`` was asked for and is not available, or ``preference`` is unknown.
    """
    offered = list(available) if available is not None else available_providers()
    if preference not in ("auto", "cpu", "cuda"):
        raise ConfigurationError(
            f"Execution provider preference '{preference}' is not supported; use 'auto', 'cpu' or 'cuda'."
        )
    if preference == "cpu":
        return [CPU]
    if CUDA in offered:
        return [CUDA, CPU]
    if preference == "cuda":
        raise ConfigurationError(
            "DXASSIST_EXECUTION_PROVIDER is 'cuda' but ONNX Runtime offers no CUDAExecutionProvider here "
            f"(available: {', '.join(offered) or 'none'}); install the 'gpu' extra on a machine with an "
            "NVIDIA GPU, or use 'auto' or 'cpu'."
        )
    return [CPU]


def provider_options(
    providers: Sequence[str], *, device_id: int = 0
) -> list[str | tuple[str, dict[str, Any]]]:
    """Attach provider options (the CUDA device) to a provider list for ``InferenceSession``."""
    out: list[str | tuple[str, dict[str, Any]]] = []
    for name in providers:
        if name == CUDA:
            # Grow the CUDA arena only as needed: the server shares the GPU with nothing it knows of.
            out.append((name, {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}))
        else:
            out.append(name)
    return out
