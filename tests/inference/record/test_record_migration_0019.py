"""Migration 0019 (revoked bearer tokens) on both backends: revocations are written with their audit entry,
read back as what the server refuses, refused when they name both or neither target, and the downgrade
drops them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from _record_data import migrate
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from inference.record import AuditIn, Record

NOW = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
SKEW = timedelta(0)
OPERATOR = AuditIn(subject="cli:ops", role="admin", facility=None, action="token:revoke")


def test_revocations_round_trip_with_their_audit_entry(record: Record) -> None:
    record.tokens.revoke(jti="a" * 32, subject=None, now=NOW, reason="laptop stolen", audit=OPERATOR)
    record.tokens.revoke(jti=None, subject="pacs-7", now=NOW, reason=None, audit=OPERATOR)
    record.tokens.revoke(
        jti=None, subject="pacs-7", now=NOW + timedelta(hours=1), reason=None, audit=OPERATOR
    )
    revoked = record.tokens.revoked()
    assert revoked.covers(token_id="a" * 32, subject="anyone", issued_at=NOW + timedelta(days=1), skew=SKEW)
    assert revoked.covers(token_id=None, subject="pacs-7", issued_at=NOW + timedelta(minutes=30), skew=SKEW)
    assert not revoked.covers(
        token_id="b" * 32, subject="pacs-7", issued_at=NOW + timedelta(hours=2), skew=SKEW
    )
    assert not revoked.covers(token_id="b" * 32, subject="pacs-8", issued_at=NOW, skew=SKEW)
    with record.engine.connect() as connection:
        actions = (
            connection.execute(
                text("SELECT resource_id FROM audit_events WHERE action = 'token:revoke' ORDER BY seq")
            )
            .scalars()
            .all()
        )
    assert actions == ["jti:" + "a" * 32, "subject:pacs-7", "subject:pacs-7"]
    assert [r.reason for r in record.tokens.listing()] == [None, None, "laptop stolen"]
    assert record.audit.verify().ok


def test_a_revocation_names_one_target_and_the_downgrade_drops_the_table(record: Record) -> None:
    with pytest.raises(ValueError):
        record.tokens.revoke(jti="a" * 32, subject="x", now=NOW, reason=None, audit=OPERATOR)
    with pytest.raises(IntegrityError), record.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO token_revocations (jti, subject, revoked_at, revoked_by) "
                "VALUES (NULL, NULL, :at, 'x')"
            ),
            {"at": NOW},
        )
    record.tokens.revoke(jti="c" * 32, subject=None, now=NOW, reason=None, audit=OPERATOR)
    migrate(record, "0018")
    assert "token_revocations" not in inspect(record.engine).get_table_names()
    migrate(record, "head")
    assert record.tokens.listing() == []
