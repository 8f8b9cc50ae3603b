"""Two first single sign-ons of one account at once (PostgreSQL): the binding of the account to the
provider's subject is decided by one conditional UPDATE, and its outcome must match who it bound.

A transaction does not see another's uncommitted binding: a sign-in of the same person (a second
workstation, a second tab) that found the account unbound, then waited for the other's UPDATE, changed
nothing and was refused, although the account is bound to exactly its subject.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from _loopback import wait_until
from _postgres import new_postgres_database
from sqlalchemy import text, update

from inference.record import Accounts, Record
from inference.record._accounts import UserAccount

ISSUER = "https://idp.hospital.example/realms/h"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def record(postgres_server: str) -> Iterator[Record]:
    rec = Record(new_postgres_database(postgres_server))
    rec.migrate()
    try:
        yield rec
    finally:
        rec.close()


def _waiting_on_a_lock(record: Record) -> bool:
    with record.engine.connect() as connection:
        waiting = connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = :db"),
            {"db": record.engine.url.database},
        )
    return bool(waiting)


def _binding_in_flight(record: Record, accounts: Accounts, username: str, subject: str) -> bool:
    with record.engine.connect() as other, ThreadPoolExecutor(1) as pool:
        # The other sign-in has bound the account to sub-1 and not committed yet.
        other.execute(
            update(UserAccount)
            .where(UserAccount.username == username)
            .values(sso_issuer=ISSUER, sso_subject=f"sub-1-{username}")
        )
        bind = pool.submit(accounts.bind_sso, username=username, issuer=ISSUER, subject=subject)
        wait_until(lambda: _waiting_on_a_lock(record), timeout=30, what="the binding waiting for the other")
        other.commit()
        return bind.result()


def test_the_same_person_signing_in_twice_at_once_is_let_in_and_another_person_refused(
    record: Record,
) -> None:
    accounts = Accounts(record)
    for username in ("dr.a", "dr.b"):
        accounts.add(username=username, password_hash="!sso-only", role="radiologist", facility="F1", now=NOW)
    assert _binding_in_flight(record, accounts, "dr.a", "sub-1-dr.a") is True  # the same person
    assert _binding_in_flight(record, accounts, "dr.b", "sub-2") is False  # another person: refused
    bound = {a.username: (a.sso_issuer, a.sso_subject) for a in accounts.list()}
    assert bound == {"dr.a": (ISSUER, "sub-1-dr.a"), "dr.b": (ISSUER, "sub-1-dr.b")}
