"""Review 30 of the audit trail, as a security officer meets it: what the terminal's commands write to the
trail is anchored outside the database like the server's entries, so `dxassist audit verify` notices when
someone with database rights removes it.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

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
