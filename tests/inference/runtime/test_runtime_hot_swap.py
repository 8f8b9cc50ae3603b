"""Hot swap: a new champion goes into service under load without failing or mixing requests."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models

from inference.config import Settings
from inference.runtime import ImagingOutput, ModelHost


def _reference_logits(path: Path, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": image[None]})[0][0]


def test_swap_under_load_fails_nothing_and_later_requests_use_the_new_version(
    tmp_path: Path, settings: Settings
) -> None:
    cache = tiny_models.seed_both(tmp_path / "models", tmp_path / "build")
    v2_path = tiny_models.build_imaging_onnx(tmp_path / "v2.onnx", seed=1)
    settings.runtime.model_watch_seconds = 0.05
    image = np.random.default_rng(3).normal(0, 0.5, size=(1, 64, 64)).astype(np.float32)
    expected = {
        "1": _reference_logits(cache / "cxr-findings" / "1" / "model.onnx", image),
        "2": _reference_logits(v2_path, image),
    }
    assert not np.allclose(expected["1"], expected["2"])

    async def main() -> tuple[list[ImagingOutput], list[ImagingOutput]]:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(cache))
        await host.start()
        try:
            swapped = asyncio.Event()

            async def client() -> list[ImagingOutput]:
                outputs = []
                for _ in range(20_000):  # a cap, not a count: clients stop once they have seen version 2
                    outputs += await host.score_images([image])
                    if swapped.is_set() and outputs[-1].model.version == "2":
                        break
                return outputs

            clients = [asyncio.create_task(client()) for _ in range(50)]
            await asyncio.sleep(0.05)  # every client has requests in flight
            await asyncio.to_thread(tiny_models.seed_cache, cache, "cxr-findings", v2_path, version="2")
            for _ in range(200):
                if host.imaging.version == "2":
                    break
                await asyncio.sleep(0.02)
            swapped.set()
            during = [out for outputs in await asyncio.gather(*clients) for out in outputs]
            after = await asyncio.gather(*(host.score_images([image]) for _ in range(10)))
            return during, [out for [out] in after]
        finally:
            await host.stop()

    during, after = asyncio.run(main())
    versions = {out.model.version for out in during}
    assert versions == {"1", "2"}  # the swap happened while the 50 clients were running
    for out in during + after:  # each request finished on the session of the version it reports
        np.testing.assert_allclose(out.logits, expected[out.model.version], atol=1e-5)
    assert {out.model.version for out in after} == {"2"}
    assert after[0].model.sha256 == tiny_models.sha256_file(v2_path)


def test_failing_fetch_keeps_the_model_in_service(
    cache: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[str, str]:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(cache))
        await host.start()
        try:
            (cache / "cxr-findings" / "aliases.json").write_text(json.dumps({}))
            with caplog.at_level(logging.WARNING, logger="inference.runtime"):
                assert await host.refresh() == []
            [out] = await host.score_images([np.zeros((1, 64, 64), np.float32)])
            return out.model.version, host.imaging.version
        finally:
            await host.stop()

    assert asyncio.run(main()) == ("1", "1")
    assert any("keeping the version in service" in r.getMessage() for r in caplog.records)


def test_an_invalid_new_champion_is_refused_and_the_old_one_stays(
    tmp_path: Path, cache: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tiny_models.build_imaging_onnx(
        tmp_path / "broken.onnx", seed=2, drop_metadata=["dxassist.labels"]
    )

    async def main() -> tuple[str, bool]:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(cache))
        await host.start()
        try:
            tiny_models.seed_cache(cache, "cxr-findings", broken, version="2")
            with caplog.at_level(logging.ERROR, logger="inference.runtime"):
                await host.refresh()
            return host.imaging.version, host.ready
        finally:
            await host.stop()

    assert asyncio.run(main()) == ("1", True)
    assert any("Refusing cxr-findings version 2" in r.getMessage() for r in caplog.records)
