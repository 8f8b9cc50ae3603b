"""Shared by the security officer's transaction tests on a real PostgreSQL (``tests/_postgres.py``): the app
served on its own database, a reader signed in to the pages, and the statements each transaction ran."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from _postgres import new_postgres_database
from _security_env import Env, TestClient, seeded_env
from sqlalchemy import Engine, event

from inference.api import create_app
from inference.record import Record
from inference.services import add_user

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Served:
    client: TestClient
    env: Env
    app: Any
    url: str


def serve(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory, name: str, **env_options: Any
) -> Iterator[Served]:
    """The app on a new database of ``postgres_server``, for a module fixture to yield from."""
    url = new_postgres_database(postgres_server)
    env = seeded_env(tmp_path_factory.mktemp(name), database_url=url, **env_options)
    app = create_app(env.settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Served(client, env, app, url)


def signed_in(s: Served, facility: str) -> tuple[TestClient, str]:
    """A radiologist of ``facility`` signed in to the pages (a browser of its own); and its trail subject."""
    username = f"dr.{uuid.uuid4().hex[:8]}"
    record = Record(s.url)
    try:
        add_user(record, username=username, password=PASSWORD, role="radiologist", facility=facility)
    finally:
        record.close()
    browser = TestClient(s.app, raise_server_exceptions=False)
    form = browser.get("/ui/signin").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf.group(1)}
    assert browser.post("/ui/signin", data=data, follow_redirects=False).status_code == 303
    return browser, f"web:{username}"


@dataclass
class Transactions:
    """The statements run on the app's engine, by the transaction they ran in."""

    begun: int = 0
    statements: list[tuple[int, str, str]] = field(default_factory=list)

    def of(self, *, statement: str, naming: str = "") -> set[int]:
        """The transactions that ran a statement holding ``statement`` with parameters naming ``naming``."""
        return {t for t, sql, params in self.statements if statement in sql and naming in params}


@contextmanager
def watching(engine: Engine) -> Iterator[Transactions]:
    """Record every statement ``engine`` runs, by transaction, until the block ends."""
    seen = Transactions()

    def began(connection: Any) -> None:
        seen.begun += 1
        connection.info["transaction"] = seen.begun

    def executed(connection: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.statements.append((connection.info.get("transaction", 0), statement, repr(parameters)))

    event.listen(engine, "begin", began)
    event.listen(engine, "before_cursor_execute", executed)
    try:
        yield seen
    finally:
        event.remove(engine, "begin", began)
        event.remove(engine, "before_cursor_execute", executed)
