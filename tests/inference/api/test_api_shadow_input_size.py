"""Shadow scoring with a challenger that takes larger images than the champion.

Champion version 1 takes 64 px images, challenger version 2 takes 128 px ones. A 96 px radiograph is
answered by the champion; the challenger refuses it for a known reason (smaller than its input). That is
counted as such (``dxassist_shadow_refused_total{reason="image_too_small"}``), not as a failed job, and
logged once, without a stack, however many such images arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from prometheus_client import REGISTRY

from inference.api import create_app

MODEL = "cxr-findings"
IMAGES = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("shadow-size-home")
    build = home / "build"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home, shadow_metrics_seconds=0)
        tiny_models.seed_both(settings.model_cache, build, input_size=64)
        larger = tiny_models.build_imaging_onnx(build / "imaging-2.onnx", seed=1, input_size=128)
        tiny_models.seed_cache(settings.model_cache, MODEL, larger, version="2", aliases=("challenger",))
        yield Env(home=home, settings=settings)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _refused() -> float:
    return _sample("dxassist_shadow_refused_total", model=MODEL, reason="image_too_small")


def test_images_between_the_two_input_sizes_are_counted_as_refused_not_failed_and_logged_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    refused_before = _refused()
    failed_before = _sample("dxassist_shadow_failed_total", model=MODEL)
    headers = env.headers("pacs", facility="F1")
    caplog.set_level(logging.INFO, logger="inference")
    with TestClient(create_app(env.settings)) as client:
        for i in range(IMAGES):
            study = new_study_uid()
            blob = chest_dicom(study=study, sop=f"{study}.1", size=96, seed=i)
            response = client.post(
                "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
            )
            assert response.status_code == 201, response.text  # the champion answers
            assert response.json()["model"]["version"] == "1"
        deadline = time.monotonic() + 120  # a generous wait for the shadow thread, not a speed check
        while _refused() - refused_before < IMAGES and time.monotonic() < deadline:
            time.sleep(0.1)

    assert _refused() - refused_before == IMAGES
    assert _sample("dxassist_shadow_failed_total", model=MODEL) == failed_before
    shadow = [r for r in caplog.records if r.name.startswith("inference.runtime._shadow")]
    assert not any(r.exc_info for r in shadow)
    [line] = [r for r in shadow if "version 2" in r.getMessage()]
    assert "128" in line.getMessage()  # says why: the challenger's input size
