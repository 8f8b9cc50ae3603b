"""``dxassist export-training-set`` reads the readers' feedback as an audited read, as a security officer
checks it on a real record: the study's result and its feedback are read in the transaction of their
audit entry (``results:read`` by ``cli:<the terminal's user>``, on the result and its patient).

The export read the feedback through ``FeedbackLog.for_result``, audited nowhere: the labels of a patient
left the record with no entry naming the patient (only the export's own entry, naming nobody).
"""

from __future__ import annotations

import csv
import getpass
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from _security_env import Env, TestClient, chest_dicom, new_study_uid, seeded_env

from inference._cli_commands import export_training_set
from inference.api import create_app
from inference.record import Record, RecordError


def _filed_with_feedback(env: Env, source: Path) -> dict[str, Any]:
    study = new_study_uid()
    dicom = chest_dicom(study=study, sop=f"{study}.1", patient_id="IPP-EXPORT-AUDIT", blob=True)
    (source / "a.dcm").write_bytes(dicom)
    with TestClient(create_app(env.settings)) as client:
        posted = client.post(
            "/v1/studies",
            files=[("files", ("a.dcm", dicom, "application/dicom"))],
            headers=env.headers("pacs", facility="F1"),
        )
        assert posted.status_code == 201, posted.text
        result: dict[str, Any] = posted.json()
        feedback = client.post(
            f"/v1/results/{result['result_id']}/feedback",
            json={"verdicts": [{"code": "nodule", "verdict": "agree"}]},
            headers=env.headers("radiologist", facility="F1"),
        )
        assert feedback.status_code == 201, feedback.text
    return result


def _reads(env: Env) -> list[dict[str, Any]]:
    record = Record(env.settings.record_url)
    try:
        _total, entries = record.audit.search(agent=f"cli:{getpass.getuser()}", limit=500)
        assert record.audit.verify().ok
    finally:
        record.close()
    return [e for e in entries if e["action"] == "results:read"]


def test_the_export_audits_its_read_of_the_readers_feedback_on_the_patient(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    result = _filed_with_feedback(env, source)
    out = tmp_path / "export"
    assert export_training_set(env.settings, out=out, source=source, stream=io.StringIO()) == 0
    rows = list(csv.DictReader((out / "labels.csv").open(encoding="utf-8")))
    assert [(r["finding"], r["verdict"]) for r in rows] == [("nodule", "agree")]
    reads = _reads(env)
    assert [
        (e["role"], e["resource_type"], e["resource_id"], e["patient_id"], e["outcome"]) for e in reads
    ] == [("admin", "Result", result["result_id"], result["patient"]["id"], "success")]


def test_an_export_whose_read_cannot_be_audited_writes_no_label(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    _filed_with_feedback(env, source)
    database = env.settings.record_url.removeprefix("sqlite:///")
    # The record refuses the terminal user's reads' entries (as a full disk or a broken chain would).
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse_cli_read BEFORE INSERT ON audit_events "
            "WHEN NEW.action = 'results:read' AND NEW.subject LIKE 'cli:%' "
            "BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END"
        )
    out = tmp_path / "export"
    with pytest.raises(RecordError):
        export_training_set(env.settings, out=out, source=source, stream=io.StringIO())
    assert not (out / "labels.csv").exists()
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER refuse_cli_read")
    assert _reads(env) == []
