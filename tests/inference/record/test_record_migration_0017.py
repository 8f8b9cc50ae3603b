"""Migration 0017 on a record in use: accounts created before it start unbound, bind to one provider
subject each, and the downgrade gives them back as they were (username sign-in only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _record_data import migrate
from sqlalchemy import inspect, text

from inference.record import Accounts, Conflict, Record

ISSUER = "https://idp.hospital.example/realms/h"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _account_before_0017(record: Record, username: str) -> None:
    with record.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO user_accounts (username, password_hash, role, facility, disabled, "
                "failed_attempts, created) VALUES (:u, '!sso-only', 'radiologist', 'F1', :f, 0, :now)"
            ),
            {"u": username, "f": False, "now": NOW.replace(tzinfo=None).isoformat(" ")},
        )


def _columns(record: Record) -> set[str]:
    return {c["name"] for c in inspect(record.engine).get_columns("user_accounts")}


def test_accounts_bind_after_the_upgrade_and_the_downgrade_forgets_the_binding(record: Record) -> None:
    migrate(record, "0016")
    assert "sso_subject" not in _columns(record)
    _account_before_0017(record, "dr.before")
    migrate(record, "head")
    accounts = Accounts(record)
    before = accounts.get(username="dr.before")
    assert before is not None and before.sso_subject is None  # unbound: its next sign-on binds it

    assert accounts.bind_sso(username="dr.before", issuer=ISSUER, subject="sub-1")
    assert not accounts.bind_sso(username="dr.before", issuer=ISSUER, subject="sub-2")  # bound already
    accounts.add(username="dr.after", password_hash="!sso-only", role="radiologist", facility="F1", now=NOW)
    # One provider subject binds one account at most.
    assert not accounts.bind_sso(username="dr.after", issuer=ISSUER, subject="sub-1")
    with pytest.raises(Conflict):
        accounts.add(
            username="dr.third", password_hash="!sso-only", role="radiologist", facility=None, now=NOW,
            sso=(ISSUER, "sub-1"),
        )  # fmt: skip
    assert accounts.bind_sso(username="dr.after", issuer=ISSUER, subject="sub-2")
    bound = {a.username: (a.sso_issuer, a.sso_subject) for a in accounts.list()}
    assert bound == {"dr.before": (ISSUER, "sub-1"), "dr.after": (ISSUER, "sub-2")}

    migrate(record, "0016")
    assert "sso_subject" not in _columns(record) and "sso_issuer" not in _columns(record)
    with record.engine.connect() as connection:
        names = connection.execute(text("SELECT username FROM user_accounts ORDER BY username")).scalars()
        assert list(names) == ["dr.after", "dr.before"]
    migrate(record, "head")
    assert {a.username: a.sso_subject for a in Accounts(record).list()} == {
        "dr.after": None,
        "dr.before": None,
    }


def test_signed_in_sessions_survive_the_upgrade_and_the_downgrade(record: Record) -> None:
    # SQLite rebuilds user_accounts (a new CHECK constraint): its sessions point at it by foreign key.
    migrate(record, "0016")
    _account_before_0017(record, "dr.signed-in")
    with record.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO web_sessions (id_hash, username, csrf, created, last_seen, expires) "
                "VALUES (:h, 'dr.signed-in', :c, :now, :now, :now)"
            ),
            {"h": "a" * 64, "c": "c" * 43, "now": NOW.replace(tzinfo=None).isoformat(" ")},
        )
    migrate(record, "head")
    accounts = Accounts(record)
    assert accounts.session(id_hash="a" * 64) is not None  # still signed in after the upgrade
    assert accounts.bind_sso(username="dr.signed-in", issuer=ISSUER, subject="sub-1")
    migrate(record, "0016")
    with record.engine.connect() as connection:
        hashes = connection.execute(text("SELECT id_hash FROM web_sessions")).scalars()
        assert list(hashes) == ["a" * 64]
    migrate(record, "head")
    assert accounts.session(id_hash="a" * 64) is not None
