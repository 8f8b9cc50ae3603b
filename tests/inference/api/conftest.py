"""Fixtures of the API tests: a DXASSIST_HOME in tmp, tiny models seeded in its cache, a running app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tiny_models
from _api_env import Env, TestClient, make_settings

from inference.api import create_app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A seeded home shared by the tests of one module (each test uses its own studies and patients)."""
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home)
        tiny_models.seed_both(settings.model_cache, home / "build")
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    """The app of ``env`` with its lifespan running."""
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client
