"""Fixtures of the security tests: a seeded home and a running app per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _postgres import new_postgres_database, running_postgres
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


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL cluster for one module (``tests/_postgres.py``)."""
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    """A seeded home whose record is SQLite, then a real PostgreSQL: one module's tests run on both."""
    overrides = {}
    if request.param == "postgresql":
        overrides["database_url"] = new_postgres_database(request.getfixturevalue("postgres_server"))
    return seeded_env(tmp_path_factory.mktemp(f"backend-{request.param}"), **overrides)
