"""``dxassist dead-letter``: an empty queue says so; ids that name nothing are refused with exit 2; a
discard deletes what it names (with ``--older-than``, only what has been dead that long)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _dxassist_cli import DXASSIST, dxassist_env


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), "dead-letter", *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_an_empty_queue_and_ids_that_name_nothing(tmp_path: Path) -> None:
    listed = _run(tmp_path, "list")
    assert listed.returncode == 0 and "empty" in listed.stdout
    assert json.loads(_run(tmp_path, "list", "--json").stdout) == []
    for bad in ("delivery:12", "study:1.2.3", "build:x", "nonsense"):
        refused = _run(tmp_path, "retry", bad)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
        assert "dead-letter" in refused.stderr and "Traceback" not in refused.stderr
    assert _run(tmp_path, "retry").returncode == 2  # neither ids nor --all
    everything = _run(tmp_path, "retry", "--all")
    assert everything.returncode == 0 and "0 dead letter(s)" in everything.stdout


def test_a_retry_moves_the_audit_trails_signed_head(tmp_path: Path) -> None:
    # A study the listener gave up on, put back by an operator: the retry's audit entry is the newest,
    # and the signed head under DXASSIST_HOME/audit/ already names it (no server write needed first).
    study = "1.2.826.0.1.3680043.8.498.4242"
    folder = tmp_path / "dead-letter" / "studies" / study
    folder.mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"DICM")
    (folder / "dead-letter.json").write_text(json.dumps({"code": "analysis_failed", "attempts": 3}))
    retried = _run(tmp_path, "retry", f"study:{study}")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    verified = subprocess.run(
        [str(DXASSIST), "audit", "verify"],
        env=dxassist_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "anchored at seq 1" in verified.stdout, verified.stdout


def test_discard_deletes_dead_studies_and_refuses_ids_that_name_nothing(tmp_path: Path) -> None:
    studies = tmp_path / "dead-letter" / "studies"
    now = datetime.now(UTC)
    old, young = "1.2.826.0.1.3680043.8.498.5151", "1.2.826.0.1.3680043.8.498.5252"
    for key, age in ((old, timedelta(days=45)), (young, timedelta(days=1))):
        (studies / key).mkdir(parents=True)
        (studies / key / "a.dcm").write_bytes(b"DICM")
        reason = {
            "code": "analysis_failed",
            "attempts": 3,
            "dead_at": (now - age).isoformat(timespec="seconds"),
        }
        (studies / key / "dead-letter.json").write_text(json.dumps(reason))

    # Anything malformed or unknown among the ids: exit 2, a sentence, and nothing deleted.
    for bad in (["nonsense"], [f"study:{old}", "delivery:x"], [f"study:{old}", "delivery:12"]):
        refused = _run(tmp_path, "discard", *bad)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
        assert "dead-letter" in refused.stderr and "Traceback" not in refused.stderr
    for bad in (
        [],
        ["--all", f"study:{old}"],
        [f"study:{old}", "--older-than", "30"],
        ["--all", "--older-than", "-1"],
    ):
        assert _run(tmp_path, "discard", *bad).returncode == 2, bad
    assert (studies / old / "a.dcm").exists() and (studies / young / "a.dcm").exists()

    # --older-than: only what has been dead that long.
    aged = _run(tmp_path, "discard", "--all", "--older-than", "30")
    assert aged.returncode == 0, aged.stdout + aged.stderr
    assert f"discarded study:{old}" in aged.stdout and "1 dead letter(s) discarded" in aged.stdout
    assert not (studies / old).exists() and (studies / young / "a.dcm").exists()
    named = _run(tmp_path, "discard", f"study:{young}")
    assert named.returncode == 0 and f"discarded study:{young}" in named.stdout
    assert not (studies / young).exists() and not (tmp_path / "incoming" / young).exists()
    assert "empty" in _run(tmp_path, "list").stdout
    # Both deletions are on the audit trail (and the listing after them), whose chain still verifies.
    verified = subprocess.run(
        [str(DXASSIST), "audit", "verify"],
        env=dxassist_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert verified.returncode == 0 and "anchored at seq 3" in verified.stdout, verified.stdout


def test_a_listing_is_on_the_trail_under_the_terminals_user_or_not_shown(tmp_path: Path) -> None:
    import getpass
    import sqlite3

    from inference.record import Record

    study = "1.2.826.0.1.3680043.8.498.8181"
    folder = tmp_path / "dead-letter" / "studies" / f"NODE_{study}"
    folder.mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"DICM")
    (folder / "dead-letter.json").write_text(json.dumps({"code": "analysis_failed", "attempts": 3}))
    listed = _run(tmp_path, "list")
    assert listed.returncode == 0 and study in listed.stdout, listed.stdout + listed.stderr
    record = Record(f"sqlite:///{tmp_path / 'record.db'}")
    try:
        reads = [e for e in record.audit.events(limit=50) if e["action"] == "dead-letter:read"]
    finally:
        record.close()
    assert [(e["subject"], e["resource_id"], e["outcome"]) for e in reads] == [
        (f"cli:{getpass.getuser()}", f"study:NODE_{study}", "success")
    ]
    assert str(reads[0]["request_id"]).startswith("dead-letters-")

    # The record refuses the listing's entries: nothing is shown, and the operator is told why.
    db = sqlite3.connect(tmp_path / "record.db")
    try:
        db.execute(
            "CREATE TRIGGER refuse_listing BEFORE INSERT ON audit_events "
            "WHEN NEW.action = 'dead-letter:read' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        db.commit()
        for args in (["list"], ["list", "--json"]):
            refused = _run(tmp_path, *args)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert study not in refused.stdout + refused.stderr and "Traceback" not in refused.stderr
    finally:
        db.close()
