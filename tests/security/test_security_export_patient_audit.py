"""Both ``dxassist export-training-set`` commands leave an entry naming every patient whose data they read,
as a security officer checks it on a real record (SQLite, as the CLI runs on a single-server install).

From DICOM files (``--source``), the export read each file's patient's consent through
``Consents.ai_processing_allowed`` (since removed), audited nowhere. From the kept model inputs (no
``--source``), its one entry named no patient: an auditor asking who saw a patient's data did not find
the export.
"""

from __future__ import annotations

import getpass
import io
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest
from _pages_audit import watching
from _security_env import Env, TestClient, chest_dicom, new_study_uid, seeded_env
from sqlalchemy import Engine

from inference._cli_commands import export_kept_training_set, export_training_set
from inference.api import create_app
from inference.record import Record, RecordError

CLI = f"cli:{getpass.getuser()}"


def _file_with_feedback(env: Env, source: Path, patient: str) -> dict[str, Any]:
    """A study of ``patient`` analysed, a reader's verdict on it, and its file under ``source``."""
    study = new_study_uid()
    dicom = chest_dicom(study=study, sop=f"{study}.1", patient_id=patient, blob=True)
    (source / f"{patient}.dcm").write_bytes(dicom)
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


def _entries(env: Env, action: str, *, patient_id: str | None = None) -> list[dict[str, Any]]:
    """The terminal user's entries of ``action`` (of one patient's, as an auditor searches them)."""
    record = Record(env.settings.record_url)
    try:
        _total, entries = record.audit.search(agent=CLI, patient_id=patient_id, limit=500)
        assert record.audit.verify().ok
    finally:
        record.close()
    return [e for e in entries if e["action"] == action]


def _refuse(env: Env, action: str) -> str:
    """Make the record refuse the terminal user's entries of ``action`` (as a full disk would)."""
    database = env.settings.record_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse_cli_entry BEFORE INSERT ON audit_events "
            f"WHEN NEW.action = '{action}' AND NEW.subject LIKE 'cli:%' "
            "BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END"
        )
    return database


def test_the_export_of_files_audits_its_read_of_each_patients_consent(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    result = _file_with_feedback(env, source, "IPP-EXPORT-CONSENT")
    out = tmp_path / "export"
    assert export_training_set(env.settings, out=out, source=source, stream=io.StringIO()) == 0
    assert len(list(out.rglob("*.dcm"))) == 1
    patient = result["patient"]["id"]
    reads = _entries(env, "consent:read", patient_id=patient)
    assert [(e["role"], e["resource_type"], e["resource_id"], e["outcome"]) for e in reads] == [
        ("admin", "Consent", patient, "success")
    ]


def test_an_export_whose_consent_read_cannot_be_audited_exports_no_file(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    _file_with_feedback(env, source, "IPP-EXPORT-CONSENT-2")
    database = _refuse(env, "consent:read")
    out = tmp_path / "export"
    with pytest.raises(RecordError):
        export_training_set(env.settings, out=out, source=source, stream=io.StringIO())
    assert not list(out.rglob("*.dcm"))
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER refuse_cli_entry")
    assert _entries(env, "consent:read") == []


def test_the_export_of_kept_inputs_names_each_exported_patient_on_the_trail(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    patients = {_file_with_feedback(env, source, f"IPP-KEPT-{n}")["patient"]["id"] for n in range(2)}
    report = io.StringIO()
    assert export_kept_training_set(env.settings, out=tmp_path / "export", stream=report) == 0
    assert "of 2 patient(s)" in report.getvalue()
    # An auditor asking who saw each patient's data finds the export.
    for patient in patients:
        exports = _entries(env, "export:training-set", patient_id=patient)
        assert [(e["role"], e["resource_type"], e["resource_id"], e["outcome"]) for e in exports] == [
            ("admin", "TrainingExport", "export", "success")
        ]
    assert {e["patient_id"] for e in _entries(env, "export:training-set")} == patients


def test_an_export_of_kept_inputs_that_cannot_be_audited_leaves_no_input(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    _file_with_feedback(env, source, "IPP-KEPT-REFUSED")
    _refuse(env, "export:training-set")
    out = tmp_path / "export"
    with pytest.raises(RecordError):
        export_kept_training_set(env.settings, out=out, stream=io.StringIO())
    assert not out.exists() or not any(out.iterdir())


# Every engine the command opens (it opens its own record): the class, not one engine.
EVERY_ENGINE = cast(Engine, Engine)


def test_each_consent_read_and_its_entry_are_one_transaction(backend_env: Env, tmp_path: Path) -> None:
    env = backend_env
    source = tmp_path / "source"
    source.mkdir()
    patients = [f"IPP-EXPORT-TX-{n}" for n in range(2)]
    ids = {_file_with_feedback(env, source, p)["patient"]["id"] for p in patients}
    with watching(EVERY_ENGINE) as seen:
        assert (
            export_training_set(env.settings, out=tmp_path / "out", source=source, stream=io.StringIO()) == 0
        )
    audited = seen.of(statement="INSERT INTO audit_events", naming="consent:read")
    for patient in patients:
        # the query that finds the patient by its identifier reads its consent: in an audited transaction
        reads = seen.of(statement="consents", naming=patient)
        assert reads and reads <= audited, patient
    assert {e["patient_id"] for e in _entries(env, "consent:read") if e["patient_id"] in ids} == ids
    # and the export itself is found under each patient it exported
    assert all(_entries(env, "export:training-set", patient_id=patient) for patient in ids)


def test_the_kept_export_names_its_patients_in_one_transaction(backend_env: Env, tmp_path: Path) -> None:
    env = backend_env
    source = tmp_path / "source"
    source.mkdir()
    ids = {_file_with_feedback(env, source, f"IPP-KEPT-TX-{n}")["patient"]["id"] for n in range(2)}
    out = tmp_path / "kept"
    with watching(EVERY_ENGINE) as seen:
        assert export_kept_training_set(env.settings, out=out, stream=io.StringIO()) == 0
    assert len(seen.of(statement="INSERT INTO audit_events", naming="export:training-set")) == 1
    named = {e["patient_id"] for e in _entries(env, "export:training-set")}
    assert ids <= named and None not in named


def test_the_kept_export_checks_each_input_again_in_the_transaction_of_its_entries(
    backend_env: Env, tmp_path: Path
) -> None:
    # Each input is read in a short transaction of its own (none is open while its file is written);
    # checked only then, an input could be exported under a consent withdrawn before the entries are
    # written, and the trail would show the export after the objection. The transaction of the entries
    # reads again whether each input is still kept and its patient's consent.
    env = backend_env
    source = tmp_path / "source"
    source.mkdir()
    results = [_file_with_feedback(env, source, f"IPP-KEPT-READ-{n}") for n in range(2)]
    with watching(EVERY_ENGINE) as seen:
        assert export_kept_training_set(env.settings, out=tmp_path / "kept", stream=io.StringIO()) == 0
    [audited] = seen.of(statement="INSERT INTO audit_events", naming="export:training-set")
    for result in results:
        assert audited in seen.of(statement="FROM training_inputs", naming=result["result_id"]), result
        assert audited in seen.of(statement="consents", naming=result["patient"]["id"]), result


def test_an_export_of_files_whose_entries_cannot_be_written_leaves_nothing(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    _file_with_feedback(env, source, "IPP-FILES-REFUSED")
    _refuse(env, "export:training-set")
    out = tmp_path / "export"
    with pytest.raises(RecordError):
        export_training_set(env.settings, out=out, source=source, stream=io.StringIO())
    assert not out.exists() or not any(out.iterdir())
