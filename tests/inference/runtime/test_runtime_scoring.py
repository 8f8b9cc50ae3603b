"""Scoring through the host: micro-batching, calibrated outputs, triage contributions, readiness."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import tiny_models
from _host_env import run_with_host
from prometheus_client import REGISTRY

from inference.config import Settings
from inference.runtime import InputRejected, ModelHost, ModelUnavailable

T = TypeVar("T")


def _images(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.3, size=(1, size, size)).astype(np.float32) for _ in range(n)]


def test_concurrent_requests_share_session_runs_and_match_one_by_one(cache: Path, settings: Settings) -> None:
    batches: list[int] = []
    images = _images(16)

    async def body(host: ModelHost) -> tuple[list, list, int]:
        singles = [(await host.score_images([image]))[0] for image in images]
        runs_before = len(batches)
        together = await asyncio.gather(*(host.score_images([image]) for image in images))
        return singles, [out for [out] in together], runs_before

    singles, together, runs_before = run_with_host(
        settings, cache, body, on_batch=lambda name, size, seconds: batches.append(size)
    )
    concurrent_runs = batches[runs_before:]
    assert runs_before == 16  # one by one: one run each
    assert len(concurrent_runs) < 16 and sum(concurrent_runs) == 16
    assert max(concurrent_runs) <= settings.runtime.batch_max_size
    for a, b in zip(singles, together, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)
        assert (a.positive == b.positive).all()


def test_batches_are_exported_as_prometheus_metrics(cache: Path, settings: Settings) -> None:
    def count(metric: str) -> float:
        return REGISTRY.get_sample_value(metric, {"model": "cxr-findings"}) or 0.0

    before = (count("dxassist_batch_size_count"), count("dxassist_batch_size_sum"))

    async def body(host: ModelHost) -> int:
        await asyncio.gather(*(host.score_images([image]) for image in _images(6)))
        return host.queue_depth

    assert run_with_host(settings, cache, body) == 0
    assert count("dxassist_batch_size_sum") - before[1] == 6
    assert 1 <= count("dxassist_batch_size_count") - before[0] < 6
    assert count("dxassist_inference_seconds_count") >= 1
    assert REGISTRY.get_sample_value("dxassist_queue_depth", {"model": "cxr-findings"}) == 0


def test_one_call_with_several_images_is_batched(cache: Path, settings: Settings) -> None:
    batches: list[int] = []

    async def body(host: ModelHost) -> int:
        outputs = await host.score_images(_images(5))
        return len(outputs)

    assert run_with_host(settings, cache, body, on_batch=lambda n, size, s: batches.append(size)) == 5
    assert batches == [5]


def test_a_bright_blob_raises_findings_and_moves_the_cam_peak(cache: Path, settings: Settings) -> None:
    plain = np.zeros((1, 64, 64), dtype=np.float32)
    blob = plain.copy()
    blob[0, 40:56, 8:24] = 3.0  # rows 40-55, columns 8-23: CAM cells (5..6, 1..2) at stride 8

    async def body(host: ModelHost) -> list:
        return await host.score_images([plain, blob])

    before, after = run_with_host(settings, cache, body)
    assert (after.probabilities > before.probabilities).all()
    assert not before.positive.any() and after.positive.any()
    peak_row, peak_col = np.unravel_index(after.cam[-1].argmax(), after.cam[-1].shape)
    assert 5 <= peak_row <= 6 and 1 <= peak_col <= 2
    labels, findings = after.labels, after.findings
    assert [code for code, _, _ in findings] == list(labels) == list(tiny_models.FIVE_CODES)
    assert after.model.version == "1" and after.model.synthetic


def test_probabilities_are_calibrated_with_the_model_temperature(tmp_path: Path, settings: Settings) -> None:
    cache = tmp_path / "models"
    tiny_models.seed_cache(
        cache, "cxr-findings", tiny_models.build_imaging_onnx(tmp_path / "i.onnx", temperature=2.0)
    )
    tiny_models.seed_cache(
        cache, "vitals-triage", tiny_models.build_triage_onnx(tmp_path / "t.onnx", temperature=2.0)
    )

    async def body(host: ModelHost) -> tuple:
        [image] = await host.score_images(_images(1))
        triage = await host.score_vitals(np.zeros(8, np.float32), np.zeros(8, np.float32))
        return image, triage

    image, triage = run_with_host(settings, cache, body)
    np.testing.assert_allclose(image.probabilities, 1 / (1 + np.exp(-image.logits / 2.0)), rtol=1e-6)
    assert triage.probability == pytest.approx(1 / (1 + np.exp(-triage.logit / 2.0)))


def test_triage_contributions_add_up_to_the_logit(cache: Path, settings: Settings) -> None:
    values = np.array([26, 91, 1, 95, 55, 125, 39.2, 2], dtype=np.float32)
    present = np.ones(8, dtype=np.float32)
    present[4] = 0.0  # diastolic not measured

    async def body(host: ModelHost) -> tuple:
        sick = await host.score_vitals(values, present)
        well = await host.score_vitals(
            np.array([16, 98, 0, 125, 80, 70, 37, 0], np.float32), np.ones(8, np.float32)
        )
        return sick, well

    sick, well = run_with_host(settings, cache, body)
    logit, contributions = tiny_models.triage_reference(values[None], present[None])
    assert sick.logit == pytest.approx(float(logit[0]), abs=1e-5)
    assert sick.logit == pytest.approx(sick.intercept + sum(sick.contributions.values()), abs=1e-5)
    assert list(sick.contributions) == list(tiny_models.TRIAGE_FEATURES)
    assert sick.contributions["diastolic_bp"] == 0.0
    assert sick.contributions["heart_rate"] == pytest.approx(float(contributions[0, 5]), abs=1e-5)
    assert sick.positive and not well.positive
    assert sick.probability > well.probability
    assert sick.model.name == "vitals-triage"


def test_wrong_tensors_are_rejected_before_they_reach_the_batch(cache: Path, settings: Settings) -> None:
    async def body(host: ModelHost) -> list[str]:
        errors = []
        for bad in (
            np.zeros((1, 32, 32), np.float32),
            np.zeros((1, 64, 64), np.float64),
            np.full((1, 64, 64), np.nan, np.float32),
        ):
            with pytest.raises(InputRejected) as info:
                await host.score_images([bad])
            errors.append(str(info.value))
        with pytest.raises(InputRejected, match=r"takes \(8,\)"):
            await host.score_vitals(np.zeros(7, np.float32), np.zeros(7, np.float32))
        # The batcher still serves good requests afterwards.
        [ok] = await host.score_images(_images(1))
        errors.append(ok.model.version)
        return errors

    errors = run_with_host(settings, cache, body)
    assert "float32 (1, 64, 64)" in errors[0] and "float64" in errors[1] and "NaN" in errors[2]
    assert errors[3] == "1"


def test_host_without_models_is_not_ready_until_they_arrive(tmp_path: Path, settings: Settings) -> None:
    cache = tmp_path / "models"

    async def body(host: ModelHost) -> list[bool]:
        states = [host.ready]
        with pytest.raises(ModelUnavailable, match="cxr-findings is not loaded"):
            await host.score_images(_images(1))
        with pytest.raises(ModelUnavailable):
            _ = host.triage
        tiny_models.seed_both(cache, tmp_path / "build")
        swapped = await host.refresh()
        states += [
            host.ready,
            len(swapped) == 2,
            [m.name for m in host.models()] == ["cxr-findings", "vitals-triage"],
        ]
        return states

    assert run_with_host(settings, cache, body) == [False, True, True, True]


def test_requests_after_stop_get_model_unavailable(cache: Path, settings: Settings) -> None:
    async def main() -> None:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(cache))
        await host.start()
        served = host.imaging
        await host.stop()
        assert not host.ready
        with pytest.raises(ModelUnavailable):
            await host.score_images(_images(1), model=served)

    asyncio.run(main())


def test_ood_score_comes_from_the_graph_and_gates_every_positive(tmp_path: Path, settings: Settings) -> None:
    """The host returns the graph's ``ood`` output (checked against numpy) with the model's threshold; an
    image over the threshold is not assessable and has no positive finding, whatever its probabilities."""
    bright = np.full((1, 64, 64), 3.0, dtype=np.float32)  # makes the tiny model's findings positive
    images = [bright, *_images(2)]
    reference_logits, reference_ood = tiny_models.tiny_imaging_reference(np.stack(images))

    def scored(threshold: float) -> list:
        cache = tmp_path / f"models-{threshold}"
        path = tiny_models.build_imaging_onnx(tmp_path / f"i-{threshold}.onnx", ood_threshold=threshold)
        tiny_models.seed_cache(cache, "cxr-findings", path)
        tiny_models.seed_cache(cache, "vitals-triage", tiny_models.build_triage_onnx(tmp_path / "t.onnx"))

        async def body(host: ModelHost) -> list:
            return await host.score_images(images)

        return run_with_host(settings, cache, body)

    open_outputs = scored(tiny_models.DEFAULT_OOD_THRESHOLD)
    for out, logits, ood in zip(open_outputs, reference_logits, reference_ood, strict=True):
        np.testing.assert_allclose(out.logits, logits, atol=1e-4)
        assert out.ood_score == pytest.approx(ood, rel=1e-4, abs=1e-6)
        assert out.assessable and out.ood_threshold == tiny_models.DEFAULT_OOD_THRESHOLD
    assert open_outputs[0].positive.any()

    refused = scored(1e-9)
    for out in refused:
        assert not out.assessable and out.ood_threshold == pytest.approx(1e-9)
        assert not out.positive.any() and not any(positive for _c, _p, positive in out.findings)
    # The probabilities stay on the result for auditors; only the decision is withheld.
    np.testing.assert_allclose(refused[0].probabilities, open_outputs[0].probabilities)
