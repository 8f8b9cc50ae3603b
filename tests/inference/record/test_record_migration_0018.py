"""Migration 0018 on a record in use: sessions opened before it carry on (without an ID token to hint a
sign-out at the provider), a single sign-on's session keeps its ID token until it closes, and the
downgrade gives the sessions back as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from _record_data import migrate
from sqlalchemy import inspect

from inference.record import Accounts, Record

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=8)


def _columns(record: Record) -> set[str]:
    return {c["name"] for c in inspect(record.engine).get_columns("web_sessions")}


def test_sessions_keep_their_id_token_until_they_close_and_the_downgrade_drops_it(record: Record) -> None:
    accounts = Accounts(record)
    accounts.add(username="dr.a", password_hash="!sso-only", role="radiologist", facility="F1", now=NOW)
    accounts.open_session(id_hash="a" * 64, username="dr.a", csrf="c" * 43, now=NOW, expires=LATER)
    migrate(record, "0017")
    assert "id_token_hint" not in _columns(record)
    migrate(record, "head")
    assert accounts.session(id_hash="a" * 64) is not None  # opened before: carries on
    accounts.open_session(
        id_hash="b" * 64, username="dr.a", csrf="c" * 43, now=NOW, expires=LATER, id_token_hint="h.e.s"
    )
    assert accounts.close_session(id_hash="b" * 64) == "h.e.s"
    assert accounts.close_session(id_hash="a" * 64) is None  # a password session's
    accounts.open_session(
        id_hash="d" * 64, username="dr.a", csrf="c" * 43, now=NOW, expires=LATER, id_token_hint="h.e.s"
    )
    migrate(record, "0017")
    assert "id_token_hint" not in _columns(record)
    migrate(record, "head")
    assert accounts.session(id_hash="d" * 64) is not None
    assert accounts.close_session(id_hash="d" * 64) is None
