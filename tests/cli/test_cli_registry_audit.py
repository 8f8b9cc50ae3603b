"""``dxassist registry promote`` / ``rollback`` are attributable: who moved which model, with what outcome.

Each decision writes an ``attempt`` entry before MLflow is touched and its outcome right after, both
with the same ``registry-<hex>`` request id; the entries show in ``/fhir/AuditEvent`` for an auditor and
``dxassist audit verify`` still finds the chain intact. Real MLflow store (``conftest.home``: champion 1,
version 2 passes the gate, version 3 is refused on pneumothorax), real SQLite record.
"""

from __future__ import annotations

import getpass
import shutil
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_home import audit_entries, registry_for
from fhir.resources.R4B.auditevent import AuditEvent

from inference.cli import main
from inference.config import Settings
from inference.record import Record
from inference.security import issue_token

MODEL = "cxr-findings"


@pytest.fixture
def at_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    yield home
    client = registry_for(home)
    if client.resolve(MODEL, "champion") != "1":  # leave the module's home as found
        client.rollback(MODEL)


def _entries(home: Path, subject: str) -> list[dict[str, Any]]:
    """The registry entries of ``subject``, oldest first."""
    return audit_entries(home, subject, ("model:promote", "model:rollback"))


def _summary(entry: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return entry["action"], entry["resource_type"], entry["resource_id"], entry["outcome"], entry["role"]


def test_a_promotion_and_its_rollback_name_the_operator_the_version_and_the_outcome(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "promote", MODEL, "2", "--operator", "ml.eng-1"]) == 0
    out = capsys.readouterr().out
    assert "champion is now version 2" in out
    assert f"Audit trail: model:promote of {MODEL}@2 by cli:ml.eng-1, outcome success" in out
    assert registry_for(at_home).resolve(MODEL, "champion") == "2"
    promoted = _entries(at_home, "cli:ml.eng-1")
    assert [_summary(e) for e in promoted] == [
        ("model:promote", "Model", f"{MODEL}@2", "attempt", "ml_engineer"),
        ("model:promote", "Model", f"{MODEL}@2", "success", "ml_engineer"),
    ]
    # The attempt and its outcome are one decision: one id, printed for the operator.
    [request_id] = {e["request_id"] for e in promoted}
    assert request_id.startswith("registry-") and request_id in out
    assert all(e["patient_id"] is None and e["facility"] is None for e in promoted)

    # Without --operator: the operating-system login.
    assert main(["registry", "rollback", MODEL]) == 0
    out = capsys.readouterr().out
    assert "champion is now version 1 again (was version 2)" in out
    assert registry_for(at_home).resolve(MODEL, "champion") == "1"
    rolled = _entries(at_home, f"cli:{getpass.getuser()}")
    assert [_summary(e) for e in rolled[-2:]] == [
        ("model:rollback", "Model", f"{MODEL}@1", "attempt", "ml_engineer"),
        ("model:rollback", "Model", f"{MODEL}@1", "success", "ml_engineer"),
    ]
    assert rolled[-1]["request_id"] != request_id


def test_a_refused_promotion_is_audited_and_moves_nothing(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "promote", MODEL, "3", "--operator", "refused-op"]) == 1
    err = capsys.readouterr().err
    assert "promotion refused" in err and "val_auroc_pneumothorax is 0.8500 against 0.9000" in err
    assert registry_for(at_home).resolve(MODEL, "champion") == "1"
    assert [_summary(e) for e in _entries(at_home, "cli:refused-op")] == [
        ("model:promote", "Model", f"{MODEL}@3", "attempt", "ml_engineer"),
        ("model:promote", "Model", f"{MODEL}@3", "refused", "ml_engineer"),
    ]


def test_promoting_the_champion_again_is_audited_as_unchanged(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "promote", MODEL, "1", "--operator", "same-op"]) == 0
    out = capsys.readouterr().out
    assert "already the champion; nothing changed" in out and "outcome unchanged" in out
    assert [e["outcome"] for e in _entries(at_home, "cli:same-op")] == ["attempt", "unchanged"]


def test_what_decides_nothing_writes_nothing(at_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A version that does not exist, a model with nothing to roll back to, an operator name that is no
    # login: refused before any entry (and any move).
    assert main(["registry", "promote", MODEL, "99", "--operator", "nobody-1"]) == 1
    assert main(["registry", "rollback", "vitals-triage", "--operator", "nobody-1"]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    assert main(["registry", "promote", MODEL, "2", "--operator", "Jane Doe"]) == 2
    assert "--operator" in capsys.readouterr().err
    assert registry_for(at_home).resolve(MODEL, "champion") == "1"
    assert _entries(at_home, "cli:nobody-1") == []


def test_no_audit_trail_no_promotion(
    at_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A record that cannot be opened (its "file" is a folder): the champion stays where it is.
    monkeypatch.setenv("DXASSIST_DATABASE_URL", f"sqlite:///{tmp_path}")
    assert main(["registry", "promote", MODEL, "2"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert registry_for(at_home).resolve(MODEL, "champion") == "1"


def test_a_decision_audited_in_a_new_record_says_where(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run without the server's settings (a home with the registry but no record yet), the entry goes to a
    # new record.db: the command says so instead of auditing somewhere nobody looks, silently.
    fresh = tmp_path / "workstation"
    fresh.mkdir()
    shutil.copyfile(home / "mlflow.db", fresh / "mlflow.db")
    shutil.copytree(home / "mlartifacts", fresh / "mlartifacts")
    monkeypatch.setenv("DXASSIST_HOME", str(fresh))
    assert main(["registry", "promote", MODEL, "2", "--operator", "elsewhere"]) == 0
    assert f"a new patient record was made at {fresh / 'record.db'}" in capsys.readouterr().err
    assert [e["outcome"] for e in _entries(fresh, "cli:elsewhere")] == ["attempt", "success"]
    assert main(["registry", "rollback", MODEL, "--operator", "elsewhere"]) == 0
    assert "a new patient record" not in capsys.readouterr().err


def test_an_outcome_the_record_refuses_after_the_move_is_said_loudly(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The database refuses the outcome entry (a trigger), after the alias has moved. The record's schema
    # is made first: this test must not rely on an earlier one having opened the record.
    record = Record(Settings(home=at_home).record_url)
    try:
        record.migrate()
    finally:
        record.close()
    db = sqlite3.connect(at_home / "record.db")
    try:
        db.execute(
            "CREATE TRIGGER refuse_outcome BEFORE INSERT ON audit_events "
            "WHEN NEW.subject = 'cli:unlucky' AND NEW.outcome = 'success' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        db.commit()
        status = main(["registry", "promote", MODEL, "2", "--operator", "unlucky"])
        db.execute("DROP TRIGGER refuse_outcome")
        db.commit()
    finally:
        db.close()
    assert status == 3
    err = capsys.readouterr().err
    assert "DID move to version 2" in err and "by hand" in err and "registry-" in err
    assert registry_for(at_home).resolve(MODEL, "champion") == "2"
    # The attempt is in the trail: the change is not missing from it.
    assert [_summary(e) for e in _entries(at_home, "cli:unlucky")] == [
        ("model:promote", "Model", f"{MODEL}@2", "attempt", "ml_engineer"),
    ]
    assert main(["audit", "verify"]) == 0


def test_an_auditor_reads_the_decisions_as_fhir_audit_events_and_the_chain_holds(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():  # starlette's preference for httpx2 (the dev extra pins httpx)
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from inference.api import create_app

    assert main(["registry", "promote", MODEL, "2", "--operator", "auditee"]) == 0
    assert main(["registry", "promote", MODEL, "3", "--operator", "auditee"]) == 1
    capsys.readouterr()

    settings = Settings(home=at_home, model_watch_seconds=0, preprocess_workers=1)  # type: ignore[call-arg]
    auditor = issue_token(settings, subject="auditor-1", role="auditor", facility=None)
    with TestClient(create_app(settings)) as api:
        answer = api.get(
            "/fhir/AuditEvent",
            params={"agent": "cli:auditee", "_count": "50"},
            headers={"Authorization": f"Bearer {auditor}"},
        )
    assert answer.status_code == 200, answer.text
    events = [entry["resource"] for entry in answer.json()["entry"]]
    for event in events:
        AuditEvent.model_validate(event)
    seen = [
        (
            e["subtype"][0]["code"],
            e["entity"][0]["what"]["identifier"]["value"],
            e.get("outcome"),
            e["outcomeDesc"],
        )
        for e in reversed(events)
    ]
    assert seen == [
        ("model:promote", f"{MODEL}@2", None, "attempt"),
        ("model:promote", f"{MODEL}@2", "0", "success"),
        ("model:promote", f"{MODEL}@3", None, "attempt"),
        ("model:promote", f"{MODEL}@3", "4", "refused"),
    ]
    for event in events:
        assert event["type"]["code"] == "110100" and event["action"] == "E"
        assert event["agent"][0]["role"][0]["coding"][0]["code"] == "ml_engineer"
        [entity] = event["entity"]
        assert entity["what"]["identifier"]["system"] == "urn:dxassist:resource:Model"
        details = {d["type"]: d["valueString"] for d in entity["detail"]}
        assert details["request-id"].startswith("registry-")

    assert main(["audit", "verify"]) == 0
    assert "audit trail intact" in capsys.readouterr().out
