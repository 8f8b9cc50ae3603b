"""The explanation and plausibility properties of POST /v1/vitals on a model trained by the pipeline.

The tiny-profile triage model is trained once for the module (seconds), seeded as the champion and
served; the same API checks as on the hand-set tiny model then run against what training produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import tiny_models
from _api_env import Env, TestClient, make_settings
from _vitals_props import (
    GENERATED,
    check_categorical_monotone,
    check_request,
    check_sign_monotone,
    post,
    requests,
)
from hypothesis import given

from inference.api import create_app
from inference.triage import PLAUSIBLE_RANGES


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from training.pipeline import TriageConfig, train_triage

    home = tmp_path_factory.mktemp("dxassist-home-trained")
    outcome = train_triage(TriageConfig.from_profile("tiny", out_dir=home / "run", progress=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        tiny_models.seed_both(settings.model_cache, home / "build")
        tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, outcome.onnx_path, version="2")
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def test_the_trained_model_is_served(client: TestClient, env: Env) -> None:
    result = post(client, env, {"heart_rate": 80})
    assert result["model"] == {**result["model"], "name": "vitals-triage", "version": "2"}


@GENERATED
@given(signs=requests())
def test_unsent_signs_contribute_zero_and_the_sum_is_the_logit(
    client: TestClient, env: Env, signs: dict[str, Any]
) -> None:
    check_request(client, env, signs)


@pytest.mark.parametrize("sign", sorted(PLAUSIBLE_RANGES))
def test_each_sign_never_lowers_risk_further_from_normal(client: TestClient, env: Env, sign: str) -> None:
    check_sign_monotone(client, env, sign)


def test_categorical_signs_never_lower_risk_away_from_normal(client: TestClient, env: Env) -> None:
    check_categorical_monotone(client, env)
