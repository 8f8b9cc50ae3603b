"""Execution provider choice and the provider a session really uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import tiny_models

from inference.config import Settings
from inference.runtime import (
    CPU,
    CUDA,
    ConfigurationError,
    ModelHost,
    available_providers,
    load_served_model,
    provider_options,
    select_providers,
)


def test_auto_prefers_cuda_when_onnxruntime_offers_it() -> None:
    assert select_providers("auto", [CUDA, CPU]) == [CUDA, CPU]


def test_auto_falls_back_to_cpu_without_cuda() -> None:
    assert select_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]


def test_cpu_is_honoured_even_when_cuda_is_there() -> None:
    assert select_providers("cpu", [CUDA, CPU]) == [CPU]


def test_cuda_without_cuda_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="CUDAExecutionProvider"):
        select_providers("cuda", [CPU])


def test_unknown_preference_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="'auto', 'cpu' or 'cuda'"):
        select_providers("tpu", [CPU])


def test_cuda_gets_its_device_id() -> None:
    options = provider_options([CUDA, CPU], device_id=1)
    assert options[0][0] == CUDA and options[0][1]["device_id"] == 1
    assert options[1] == CPU


def test_served_model_reports_the_provider_the_session_uses(cache: Path, settings: Settings) -> None:
    local = tiny_models.read_cache(cache, tiny_models.IMAGING_NAME, "champion")
    served = load_served_model(local, settings.runtime)
    assert served.provider == served.session.get_providers()[0] == CPU
    assert served.describe()["provider"] == CPU


def test_auto_on_this_machine_uses_what_onnxruntime_offers(cache: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", execution_provider="auto", model_watch_seconds=0)
    local = tiny_models.read_cache(cache, tiny_models.TRIAGE_NAME, "champion")
    served = load_served_model(local, settings.runtime)
    expected = CUDA if CUDA in available_providers() else CPU
    assert served.provider == expected


def test_host_refuses_to_start_on_cuda_when_there_is_none(cache: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", execution_provider="cuda", model_watch_seconds=0)
    host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(cache))

    async def start() -> list[str]:
        try:
            await host.start()
            return [m.provider for m in host.models()]
        finally:
            await host.stop()

    if CUDA in available_providers():  # a GPU machine: CUDA must be what the sessions use
        assert asyncio.run(start()) == [CUDA, CUDA]
    else:
        with pytest.raises(ConfigurationError, match="cuda"):
            asyncio.run(start())
