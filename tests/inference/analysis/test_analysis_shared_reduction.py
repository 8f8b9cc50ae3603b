"""A large uncompressed radiograph is windowed once at a reduced resolution for both the model and the
display: the probabilities stay those of the full-resolution preprocessing training uses, and the display
rendering is the one rendered from the full pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tiny_models

from benchmarks._files import EXPLICIT_LE, UidTemplate, _dataset, _write, chest_pixels
from inference.analysis import analyse_now, display_shape, render_display
from inference.analysis._display import shared_reduction
from inference.config import Settings
from inference.dicom import Limits, read_study
from inference.preprocess import prepare
from inference.runtime import load_served_model, score_batch


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tiny_models.build_imaging_onnx(tmp_path_factory.mktemp("m") / "m.onnx", input_size=64)
    local = SimpleNamespace(name="cxr-findings", version="1", sha256=tiny_models.sha256_file(path), path=path)
    settings = Settings(home=tmp_path_factory.mktemp("home"), database_url=None, mlflow_tracking_uri=None)
    return load_served_model(local, settings.runtime)


def test_reduction_keeps_four_model_sides_and_the_display_size() -> None:
    assert shared_reduction((2048, 2048), (1024, 1024), 160) == 2
    assert shared_reduction((2048, 2048), (1024, 1024), 320) == 1  # 1024 < 4 x 320: full resolution
    assert shared_reduction((4096, 4096), (1024, 1024), 160) == 4
    assert shared_reduction((300, 280), (300, 280), 64) == 1  # small films: as before


def test_probabilities_and_display_match_the_full_resolution_path(served) -> None:  # type: ignore[no-untyped-def]
    uids = UidTemplate()
    data = _write(_dataset(chest_pixels(2048), uids), EXPLICIT_LE)
    instance = read_study(
        [data], limits=Limits(max_instance_bytes=1 << 26, max_pixels=1 << 24, max_instances=4), target_size=64
    ).primary
    assert instance.pixels.shape == (2048, 2048)
    full = score_batch(served, prepare(instance, served.imaging_meta.preprocess).tensor[None])[0]
    analysis = analyse_now(instance, served)
    probabilities = np.array([f.probability for f in analysis.findings])
    assert np.abs(probabilities - full.probabilities).max() < 0.005
    assert [f.positive for f in analysis.findings] == [bool(v) for v in full.positive]
    display = analysis.rendering.display
    assert display.shape == display_shape((2048, 2048)) == (1024, 1024)
    reference = render_display(instance, served.imaging_meta.preprocess).astype(int)
    assert np.abs(display.astype(int) - reference).max() <= 1


def test_jpeg2000_decoded_at_display_size_is_windowed_once_with_the_same_result(served) -> None:  # type: ignore[no-untyped-def]
    """A 2048² JPEG 2000 film arrives decoded at 1024² (one wavelet level dropped), the display size: the
    model input and the display rendering come from one windowing and are exactly what the separate
    ``prepare`` and ``render_display`` give."""
    from benchmarks._files import J2K_LOSSLESS
    from inference.analysis._analysis import _prepare

    pixels = chest_pixels(2048)
    ds = _dataset(pixels, UidTemplate())
    ds.compress(J2K_LOSSLESS, pixels, generate_instance_uid=False)  # type: ignore[attr-defined]
    data = _write(ds, J2K_LOSSLESS)
    # A 256-px target keeps 1024² (four times it), as a 160-px model's keeps for this film.
    instance = read_study(
        [data],
        limits=Limits(max_instance_bytes=1 << 26, max_pixels=1 << 24, max_instances=4),
        target_size=256,
    ).primary
    assert instance.reduction > 1 and instance.pixels.shape == display_shape((2048, 2048))
    params = served.imaging_meta.preprocess
    shared = _prepare(instance, served)
    assert shared.display is not None
    np.testing.assert_array_equal(shared.display, render_display(instance, params))
    np.testing.assert_array_equal(shared.prepared.tensor, prepare(instance, params).tensor)
    assert shared.prepared.geometry == prepare(instance, params).geometry


def test_the_reduced_decodes_keep_the_display_rendering_size() -> None:
    from inference.analysis import DISPLAY_SIDE
    from inference.dicom import REDUCED_MIN_LONG_SIDE

    assert REDUCED_MIN_LONG_SIDE == DISPLAY_SIDE


def _seeded(tmp_path: Path, side: int) -> tuple[Settings, Any]:
    """Settings whose model cache holds a 64-px tiny imaging model, and a decoded ``side``² radiograph."""
    settings = Settings(home=tmp_path / "home", database_url=None, mlflow_tracking_uri=None)
    tiny_models.seed_cache(
        settings.model_cache,
        tiny_models.IMAGING_NAME,
        tiny_models.build_imaging_onnx(tmp_path / "m.onnx", input_size=64),
    )
    data = _write(_dataset(chest_pixels(side), UidTemplate()), EXPLICIT_LE)
    limits = Limits(max_instance_bytes=1 << 26, max_pixels=1 << 24, max_instances=4)
    return settings, read_study([data], limits=limits, target_size=64).primary


def test_the_server_path_stores_the_display_it_encoded_while_the_model_ran(tmp_path: Path) -> None:
    """``analyse(store=True)`` (the server's path) encodes the record's JPEG of the display rendering
    while the image is scored: the result and what the record keeps are those of the in-process path,
    and the kept JPEG shows the rendering the result reports."""
    import asyncio
    import io

    from PIL import Image

    from inference.analysis import Analysis, analyse
    from inference.analysis._rendering import encode_display
    from inference.runtime import ModelHost

    settings, instance = _seeded(tmp_path, 2048)

    async def main() -> tuple[Analysis, Analysis, Analysis]:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(settings.model_cache))
        await host.start()
        try:
            served = host.imaging
            stored = await analyse(instance, served=served, host=host, store=True)
            plain = await analyse(instance, served=served, host=host)
            return stored, plain, analyse_now(instance, served)
        finally:
            await host.stop()

    stored, plain, direct = asyncio.run(main())
    assert stored.rendering.encoded_display is not None  # made while the model ran
    assert plain.rendering.encoded_display is None  # not asked for: to_stored encodes it
    assert [f.probability for f in stored.findings] == [f.probability for f in direct.findings]
    assert [f.box for f in stored.findings] == [f.box for f in direct.findings]
    kept = stored.rendering.to_stored()
    assert kept.display == encode_display(direct.rendering.display) == plain.rendering.to_stored().display
    assert kept.cams == direct.rendering.to_stored().cams
    with Image.open(io.BytesIO(kept.display)) as picture:
        assert (picture.height, picture.width) == direct.rendering.shape == (1024, 1024)


def test_the_image_is_prepared_while_the_consent_is_read_and_never_scored_when_refused(
    tmp_path: Path,
) -> None:
    """``analyse(cleared=...)``: the consent read (``cleared``) and the preparation run at the same time;
    a refusal is what the caller gets, even for an image that cannot be prepared, and nothing reaches
    the model; once cleared, the analysis is the plain one."""
    import asyncio
    from dataclasses import replace

    from inference.analysis import Analysis, ImageUnusable, analyse
    from inference.runtime import ModelHost

    settings, instance = _seeded(tmp_path, 512)
    unusable = replace(instance, pixels=np.zeros((0, 0), dtype=np.uint16))  # nothing to prepare

    class Refused(Exception):
        pass

    async def main() -> tuple[list[str], int, Analysis, Analysis]:
        host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(settings.model_cache))
        await host.start()
        steps: list[str] = []
        try:
            served = host.imaging

            async def refuse() -> None:
                await asyncio.sleep(0.05)  # the consent read answers after the preparation began
                steps.append("refused")
                raise Refused

            async def run(fn: Callable[..., Any], *args: Any) -> Any:
                steps.append("preparing")
                return await asyncio.to_thread(fn, *args)

            with pytest.raises(Refused):
                await analyse(instance, served=served, host=host, run=run, cleared=refuse())
            with pytest.raises(Refused):  # the refusal, not the image's fault, is what the sender hears
                await analyse(unusable, served=served, host=host, cleared=refuse())
            refused_batches = host.batches_run

            async def permit() -> None:
                await asyncio.sleep(0)

            with pytest.raises(ImageUnusable):
                await analyse(unusable, served=served, host=host, cleared=permit())
            cleared = await analyse(instance, served=served, host=host, cleared=permit())
            plain = await analyse(instance, served=served, host=host)
            return steps, refused_batches, cleared, plain
        finally:
            await host.stop()

    steps, refused_batches, cleared, plain = asyncio.run(main())
    assert steps[:2] == ["preparing", "refused"]  # prepared while the consent was read
    assert refused_batches == 0  # nothing of a refused patient reached the model
    assert [f.probability for f in cleared.findings] == [f.probability for f in plain.findings]
    assert [f.box for f in cleared.findings] == [f.box for f in plain.findings]
