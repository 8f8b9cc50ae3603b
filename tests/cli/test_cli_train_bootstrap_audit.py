"""``dxassist train --register`` and ``dxassist bootstrap`` move aliases, so they are audited like
``registry promote``: who gave which version the ``challenger`` (``model:register``) or first ``champion``
(``model:promote``) alias, an ``attempt`` before MLflow moves and the outcome after, one request id.

Real MLflow store (copied migrated template), real SQLite record, real (``tiny``-sized, seconds) triage
training; ``dxassist audit verify`` and ``/fhir/AuditEvent`` read the entries back.
"""

from __future__ import annotations

import getpass
import warnings
from pathlib import Path
from typing import Any

import pytest
from _cli_home import FINDINGS, audit_entries, make_home, register, registry_for
from tiny_models import build_imaging_onnx, build_triage_onnx

from inference.cli import main
from inference.config import Settings
from inference.record import HeadAnchor, Record
from inference.security import issue_token

TINY_TRIAGE = "n_train: 4000\nn_val: 2000\nn_test: 3000\nepochs: 3\nn_boot: 200\n"
FIGURES = {f"val_auroc_{f}": 0.90 for f in FINDINGS} | {"val_macro_auroc": 0.9}
MOVES = ("model:register", "model:promote", "model:rollback")


def _moves(home: Path, subject: str) -> list[dict[str, Any]]:
    """The alias-move entries of ``subject``, oldest first."""
    return audit_entries(home, subject, MOVES)


def _entries(home: Path, subject: str) -> list[tuple[str, str, str, str]]:
    """``(action, resource_id, outcome, role)`` of the alias moves of ``subject``, oldest first."""
    return [(e["action"], e["resource_id"], e["outcome"], e["role"]) for e in _moves(home, subject)]


def _request_ids(home: Path, subject: str) -> list[str]:
    return [e["request_id"] for e in _moves(home, subject)]


@pytest.fixture
def served_home(tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Both served models with champion version 1 (tiny models), DXASSIST_HOME pointing at it."""
    root = make_home(tmp_path / "home", migrated_store)
    client = registry_for(root)
    register(client, "cxr-findings", build_imaging_onnx(root / "exports" / "cxr.onnx"), FIGURES)
    client.promote("cxr-findings", 1)
    register(client, "vitals-triage", build_triage_onnx(root / "exports" / "triage.onnx"), {"val_auroc": 0.5})
    client.promote("vitals-triage", 1)
    monkeypatch.setenv("DXASSIST_HOME", str(root))
    return root


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-triage.yaml"
    path.write_text(TINY_TRIAGE, encoding="utf-8")
    return path


@pytest.mark.slow
def test_train_register_audits_the_new_challenger_and_an_auditor_reads_it(
    served_home: Path, tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "triage", "--config", str(tiny_config), "--out", str(tmp_path / "run")]
    assert main([*argv, "--register", "--operator", "trainer-1"]) == 0
    out = capsys.readouterr().out
    assert registry_for(served_home).aliases("vitals-triage") == {"champion": "1", "challenger": "2"}
    assert "Audit trail: model:register of vitals-triage@2 by cli:trainer-1, outcome success" in out
    assert _entries(served_home, "cli:trainer-1") == [
        ("model:register", "vitals-triage@2", "attempt", "ml_engineer"),
        ("model:register", "vitals-triage@2", "success", "ml_engineer"),
    ]
    [request_id] = set(_request_ids(served_home, "cli:trainer-1"))
    assert request_id.startswith("registry-") and request_id in out

    with warnings.catch_warnings():  # starlette's preference for httpx2 (the dev extra pins httpx)
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from inference.api import create_app

    settings = Settings(home=served_home, model_watch_seconds=0, preprocess_workers=1)  # type: ignore[call-arg]
    auditor = issue_token(settings, subject="auditor-1", role="auditor", facility=None)
    with TestClient(create_app(settings)) as api:
        answer = api.get(
            "/fhir/AuditEvent",
            params={"agent": "cli:trainer-1"},
            headers={"Authorization": f"Bearer {auditor}"},
        )
    assert answer.status_code == 200, answer.text
    events = [entry["resource"] for entry in reversed(answer.json()["entry"])]
    assert [(e["subtype"][0]["code"], e["outcomeDesc"], e.get("outcome")) for e in events] == [
        ("model:register", "attempt", None),
        ("model:register", "success", "0"),
    ]
    for event in events:  # an operator's act on the model in service, not a read of patient data
        assert event["type"]["code"] == "110100" and event["action"] == "E"
        assert event["entity"][0]["what"]["identifier"]["value"] == "vitals-triage@2"

    assert main(["audit", "verify"]) == 0
    assert "audit trail intact" in capsys.readouterr().out


@pytest.mark.slow
def test_training_without_register_moves_nothing_and_writes_nothing(
    served_home: Path, tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "triage", "--config", str(tiny_config), "--out", str(tmp_path / "run")]
    assert main([*argv, "--operator", "trainer-2"]) == 0
    assert "Not registered" in capsys.readouterr().out
    client = registry_for(served_home)
    assert client.aliases("vitals-triage") == {"champion": "1"}
    assert [v.version for v in client.show("vitals-triage").versions] == ["1"]
    assert not (served_home / "record.db").exists()  # no record opened, no entry


def test_no_audit_trail_no_training_to_register(
    served_home: Path,
    tiny_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The record cannot be opened (its "file" is a folder): refused before minutes of training are spent.
    monkeypatch.setenv("DXASSIST_DATABASE_URL", f"sqlite:///{tmp_path}")
    argv = ["train", "triage", "--config", str(tiny_config), "--out", str(tmp_path / "run"), "--register"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "nothing was changed" in captured.err and "Training" not in captured.out
    assert not (tmp_path / "run").exists()
    assert registry_for(served_home).aliases("vitals-triage") == {"champion": "1"}


def test_bootstrap_audits_each_first_champion_with_no_extra_flags(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A home whose first bootstrap was interrupted after training: challengers wait, nothing is champion.
    root = make_home(tmp_path / "home", migrated_store)
    client = registry_for(root)
    register(client, "cxr-findings", build_imaging_onnx(root / "exports" / "cxr.onnx"), FIGURES)
    register(client, "vitals-triage", build_triage_onnx(root / "exports" / "triage.onnx"), {"val_auroc": 0.5})
    monkeypatch.setenv("DXASSIST_HOME", str(root))
    subject = f"cli:{getpass.getuser()}"

    assert main(["bootstrap"]) == 0  # as `make run` calls it
    out, err = capsys.readouterr()
    assert client.resolve("cxr-findings", "champion") == "1"
    assert client.resolve("vitals-triage", "champion") == "1"
    assert _entries(root, subject) == [
        ("model:promote", "cxr-findings@1", "attempt", "ml_engineer"),
        ("model:promote", "cxr-findings@1", "success", "ml_engineer"),
        ("model:promote", "vitals-triage@1", "attempt", "ml_engineer"),
        ("model:promote", "vitals-triage@1", "success", "ml_engineer"),
    ]
    ids = _request_ids(root, subject)
    assert ids[0] == ids[1] != ids[2] == ids[3]  # one decision per model
    for name in ("cxr-findings", "vitals-triage"):
        assert f"Audit trail: model:promote of {name}@1 by {subject}, outcome success" in out
    assert "a new patient record" not in err  # a first bootstrap makes the home, its record included

    # Every champion in place: a second run moves nothing and writes nothing.
    assert main(["bootstrap", "--operator", "second-run"]) == 0
    assert "Audit trail" not in capsys.readouterr().out
    assert len(_entries(root, subject)) == 4 and _entries(root, "cli:second-run") == []
    assert main(["audit", "verify"]) == 0


@pytest.mark.slow
def test_bootstrap_audits_the_model_it_trains_registers_and_promotes(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The training path of bootstrap, with the audited moves `dxassist bootstrap` passes (``tiny``
    # profile: the command line offers quick and full only, minutes each).
    from inference.services._model_decisions import AuditedMoves
    from training.cli import bootstrap

    root = make_home(tmp_path / "home", migrated_store)
    client = registry_for(root)
    register(client, "cxr-findings", build_imaging_onnx(root / "exports" / "cxr.onnx"), FIGURES)
    client.promote("cxr-findings", 1)
    monkeypatch.setenv("DXASSIST_HOME", str(root))
    settings = Settings()

    def open_record() -> Record:
        record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
        record.migrate()
        return record

    moves = AuditedMoves(open_record, "cli:boot-op")
    try:
        results = {r.name: r for r in bootstrap(settings, profile="tiny", echo=lambda _: None, moves=moves)}
    finally:
        moves.close()

    assert (results["cxr-findings"].action, results["vitals-triage"].action) == ("kept", "trained")
    assert client.aliases("vitals-triage") == {"champion": "1"}  # the challenger alias went with promotion
    assert _entries(root, "cli:boot-op") == [
        ("model:register", "vitals-triage@1", "attempt", "ml_engineer"),
        ("model:register", "vitals-triage@1", "success", "ml_engineer"),
        ("model:promote", "vitals-triage@1", "attempt", "ml_engineer"),
        ("model:promote", "vitals-triage@1", "success", "ml_engineer"),
    ]
    assert [action for action, _made in moves.made] == ["model:register", "model:promote"]
    assert main(["audit", "verify"]) == 0
