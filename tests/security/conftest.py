"""Fixtures of the security tests: a seeded home and a running app per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _security_env import Env, TestClient, seeded_env

from inference.api import create_app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A seeded home shared by the tests of one module (each test uses its own studies and patients)."""
    home = tmp_path_factory.mktemp("dxassist-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        yield seeded_env(home)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    """The app of ``env`` with its lifespan running."""
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client
