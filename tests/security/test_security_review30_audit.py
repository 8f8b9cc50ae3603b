"""Review 30 of the audit trail, as a security officer meets it: what the terminal's commands write to the
trail is anchored outside the database like the server's entries, so `dxassist audit verify` notices when
someone with database rights removes it; an anchor made again after it was deleted is said in the log.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from _audit_tamper import cut_tail

from inference._cli_commands import audit_verify, user_command
from inference.config import Settings
from inference.record import HeadAnchor, Record


def _served_accesses(settings: Settings, count: int) -> None:
    """Entries as the server writes them (anchored after each commit)."""
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
        for n in range(count):
            record.audit.append(
                subject=f"reader-{n}", role="radiologist", facility="F1", action="worklist:read",
                resource_type="Worklist", resource_id=None, patient_id=None, outcome="success",
                client="10.0.0.9",
            )  # fmt: skip
    finally:
        record.close()


def test_an_account_created_at_the_terminal_cannot_be_cut_from_the_trail_unnoticed(tmp_path: Path) -> None:
    # A reader's account gives access to patient data: `dxassist user add` writes `user:add` to the trail.
    # That entry was not anchored (the command opened the record without the anchor), so deleting it
    # with the head moved back (the last entry, before the server's next access) left a trail that
    # `audit verify` called intact.
    home = tmp_path / "home"
    settings = Settings(home=home)
    _served_accesses(settings, 3)
    out = io.StringIO()
    assert audit_verify(settings, stream=out) == 0, out.getvalue()
    added = user_command(
        settings,
        SimpleNamespace(
            user_command="add", username="dr.night", role="admin", facility=None, password_stdin=True
        ),
        stdin=io.StringIO("a-long-enough-password\n"),
        stream=io.StringIO(),
    )
    assert added == 0
    out = io.StringIO()
    assert audit_verify(settings, stream=out) == 0, out.getvalue()
    assert "anchored at seq 4" in out.getvalue()  # the account's entry, not only the server's before it
    cut_tail(home / "record.db", 1)
    out = io.StringIO()
    assert audit_verify(settings, stream=out) == 1
    assert "tail was removed" in out.getvalue()


def test_a_deleted_anchor_made_again_by_the_next_access_is_said_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Deleting audit/head.json is the officer's reset, and also how someone with write access to the
    # database and to DXASSIST_HOME/audit hides a cut tail: the next audited access anchors the cut trail
    # and `audit verify` passes again. That moment left no trace; it is now a critical log line.
    home = tmp_path / "home"
    settings = Settings(home=home)
    with caplog.at_level(logging.WARNING):
        _served_accesses(settings, 3)
    assert not [r for r in caplog.records if getattr(r, "code", None) == "audit_anchor_reset"]
    cut_tail(home / "record.db", 1)
    (home / "audit" / "head.json").unlink()
    with caplog.at_level(logging.WARNING):
        _served_accesses(settings, 1)
    assert audit_verify(settings, stream=io.StringIO()) == 0  # the cut is anchored: only the log tells
    resets = [r for r in caplog.records if getattr(r, "code", None) == "audit_anchor_reset"]
    assert [r.levelname for r in resets] == ["CRITICAL"]
