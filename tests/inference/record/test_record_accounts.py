"""Local accounts and web sessions of the pages, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inference.record import Accounts, Conflict, NotFound, Record


def test_accounts_lockout_and_sessions(record: Record) -> None:
    accounts = Accounts(record)
    now = datetime.now(UTC)
    accounts.add(username="dr.a", password_hash="scrypt$x", role="radiologist", facility="F1", now=now)
    with pytest.raises(Conflict):
        accounts.add(username="dr.a", password_hash="scrypt$y", role="admin", facility=None, now=now)
    assert [a.username for a in accounts.list()] == ["dr.a"]

    lock_until = now + timedelta(minutes=15)
    results = [
        accounts.register_failure(username="dr.a", max_attempts=3, lock_until=lock_until) for _ in range(3)
    ]
    assert results[:2] == [None, None] and results[2] == lock_until
    account = accounts.get(username="dr.a")
    assert account is not None and account.locked_until == lock_until and account.failed_attempts == 0
    accounts.register_success(username="dr.a", now=now, new_hash="scrypt$z")
    account = accounts.get(username="dr.a")
    assert account is not None and account.locked_until is None and account.password_hash == "scrypt$z"

    accounts.open_session(id_hash="h1", username="dr.a", csrf="c1", now=now, expires=now + timedelta(hours=1))
    accounts.open_session(id_hash="h0", username="dr.a", csrf="c0", now=now - timedelta(hours=3),
                          expires=now - timedelta(hours=2))  # fmt: skip
    accounts.open_session(id_hash="h2", username="dr.a", csrf="c2", now=now, expires=now + timedelta(hours=1))
    assert accounts.session(id_hash="h0") is None  # expired sessions are purged when another opens
    row = accounts.session(id_hash="h1")
    assert row is not None and row.csrf == "c1" and row.account.role == "radiologist"
    accounts.touch(id_hash="h1", now=now + timedelta(minutes=5))
    row = accounts.session(id_hash="h1")
    assert row is not None and row.last_seen == now + timedelta(minutes=5)
    accounts.close_session(id_hash="h1")
    assert accounts.session(id_hash="h1") is None

    accounts.set_disabled(username="dr.a", disabled=True)
    assert accounts.session(id_hash="h2") is None  # disabling ends the open sessions
    with pytest.raises(NotFound):
        accounts.set_disabled(username="nobody", disabled=True)
