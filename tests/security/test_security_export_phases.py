"""The kept-inputs training export writes its files outside any transaction, as a security officer and an
operator check it on a real SQLite and a real PostgreSQL: a long export stops no filing and loses no
session, and a patient who objects while it runs never appears in the published folder.

The export read every input and appended its entries in one transaction, writing its files while that
transaction was open. On SQLite it was a write transaction from its start: every upload waited for the
whole export and failed with "database is locked" after the busy timeout. On PostgreSQL a file write that
stalled past the server's idle-in-transaction limit (30 s) cost the export its session, and the export
failed at its end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _postgres import new_postgres_database
from _security_env import Env, TestClient, seeded_env, upload
from test_security_export_lock import _in_thread, _wait_for
from test_security_export_patient_audit import _file_with_feedback

from inference._cli_commands import export_kept_training_set
from inference.api import create_app
from inference.deid import deid_secret
from inference.record import AuditIn, Record
from inference.record import _engine as record_engine
from inference.services._training_export import (
    LABELS_FILE,
    MANIFEST_FILE,
    STAGING,
    VERDICTS_FILE,
    _ref,
    content_digest,
    export_kept_inputs,
)

_LIVENESS_S = 60.0  # a bound on waiting for the other thread, never an assertion on time
_EXPORTER = f"cli:exporter-{uuid.uuid4().hex[:6]}"


@dataclass
class Paused:
    """An export of two patients' results, paused on the second one's input (a pipe nobody reads yet)."""

    out: Path
    first: dict[str, Any]
    second: dict[str, Any]
    written_first: Path
    pipe: Path
    later: list[Path]  # the inputs of the results exported after the second


def _paused_export(env: Env, tmp_path: Path, tag: str, *, results: int = 2) -> Paused:
    source = tmp_path / "source"
    source.mkdir()
    filed = sorted(
        (_file_with_feedback(env, source, f"IPP-{tag}-{n}-{uuid.uuid4().hex[:6]}") for n in range(results)),
        key=lambda r: str(r["result_id"]),
    )
    first, second = filed[:2]  # exported in this order
    secret = deid_secret(env.settings.keys_dir)
    out = tmp_path / "export"
    inputs = out / STAGING / "inputs"  # where the export writes until it is audited
    inputs.mkdir(parents=True)
    paths = [inputs / f"{_ref(secret, 'result', str(r['result_id']))}.npz" for r in filed]
    os.mkfifo(paths[1])
    return Paused(out, first, second, paths[0], paths[1], paths[2:])


def _export(env: Env, record: Record, out: Path) -> Any:
    audit = AuditIn(subject=_EXPORTER, role="admin", facility=None, action="export:training-set")
    secret = deid_secret(env.settings.keys_dir)
    return lambda: export_kept_inputs(record, out=out, secret=secret, audit=audit, report=io.StringIO())


def _release(pipe: Path) -> None:
    with open(pipe, "rb") as reader:  # let the export go on
        reader.read()


def _exported_patients(record: Record) -> list[str | None]:
    _total, entries = record.audit.search(agent=_EXPORTER, limit=500)
    assert record.audit.verify().ok
    return [e["patient_id"] for e in entries if e["action"] == "export:training-set"]


def test_an_upload_is_filed_on_sqlite_while_an_export_writes_its_files(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(tmp_path / "home"))
        env = seeded_env(tmp_path / "home")
        paused = _paused_export(env, tmp_path, "SQLITE-PHASE")
        record = Record(env.settings.record_url)
        try:
            with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
                exporter, exported = _in_thread(_export(env, record, paused.out))
                try:
                    _wait_for(paused.written_first, exporter)
                    filing, filed = _in_thread(
                        lambda: upload(
                            client, env.headers("pacs", facility="F1"), patient_id="IPP-SQLITE-NEW"
                        )
                    )
                    filing.join(_LIVENESS_S)
                    assert not filing.is_alive(), "the filing waited for the export"
                    assert exporter.is_alive()  # still paused on its second input
                finally:
                    _release(paused.pipe)
                    exporter.join(_LIVENESS_S)
            assert filed["value"].status_code == 201, filed["value"].text
            assert not exporter.is_alive() and "error" not in exported, exported.get("error")
            assert sorted(_exported_patients(record)) == sorted(
                [paused.first["patient"]["id"], paused.second["patient"]["id"]]
            )
        finally:
            record.close()


@pytest.fixture
def postgres_env(postgres_server: str, tmp_path: Path) -> Iterator[Env]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(tmp_path / "home"))
        yield seeded_env(tmp_path / "home", database_url=new_postgres_database(postgres_server))


def test_an_export_stalled_past_postgresqls_idle_in_transaction_limit_completes(
    postgres_env: Env, tmp_path: Path
) -> None:
    env = postgres_env
    paused = _paused_export(env, tmp_path, "PG-IDLE")
    # The server ends a session left idle inside a transaction after 0.3 s (30 s in production).
    with pytest.MonkeyPatch.context() as mp:
        options = str(record_engine._POSTGRES_CONNECT_ARGS["options"])
        low = options.replace(
            "idle_in_transaction_session_timeout=30000", "idle_in_transaction_session_timeout=300"
        )
        assert low != options
        mp.setitem(record_engine._POSTGRES_CONNECT_ARGS, "options", low)
        record = Record(env.settings.record_url)
        try:
            exporter, exported = _in_thread(_export(env, record, paused.out))
            try:
                _wait_for(paused.written_first, exporter)
                # The destination stalls ten times the limit (a slow network share).
                threading.Event().wait(3.0)
                assert exporter.is_alive()
            finally:
                _release(paused.pipe)
                exporter.join(_LIVENESS_S)
            assert not exporter.is_alive() and "error" not in exported, exported.get("error")
            assert sorted(_exported_patients(record)) == sorted(
                [paused.first["patient"]["id"], paused.second["patient"]["id"]]
            )
        finally:
            record.close()
    labels = (paused.out / LABELS_FILE).read_text(encoding="utf-8")
    assert paused.written_first.name in labels and paused.pipe.name in labels


def _object(client: TestClient, env: Env, patient: dict[str, Any]) -> None:
    objection = {"ai_processing": "deny", "national_sharing": "permit"}
    path = f"/v1/patients/{patient['id']}/consent"
    withdrawn = client.put(path, json=objection, headers=env.headers("clinician", facility="F1"))
    assert withdrawn.status_code == 200, withdrawn.text


def _under(out: Path) -> list[str]:
    """Every path under ``out``, hidden ones too."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))


def test_a_patient_who_objects_while_an_export_runs_is_never_in_the_published_folder(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(tmp_path / "home"))
        env = seeded_env(tmp_path / "home")
        paused = _paused_export(env, tmp_path, "OBJECT-PUBLISH")
        record = Record(env.settings.record_url)
        try:
            with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
                exporter, exported = _in_thread(_export(env, record, paused.out))
                try:
                    _wait_for(paused.written_first, exporter)
                    _object(client, env, paused.first["patient"])
                    # Nothing is published before the export is audited: a trainer reading the folder
                    # now finds no input, no labels and no manifest.
                    assert not (paused.out / "inputs" / paused.written_first.name).exists()
                    assert not (paused.out / LABELS_FILE).exists()
                    assert not (paused.out / MANIFEST_FILE).exists()
                finally:
                    _release(paused.pipe)
                    exporter.join(_LIVENESS_S)
            assert not exporter.is_alive() and "error" not in exported, exported.get("error")
            assert _exported_patients(record) == [paused.second["patient"]["id"]]
        finally:
            record.close()
    # Published: only the consenting patient's input, labels and manifest; nothing of the objector's
    # anywhere under the folder, and nothing left of the export's own workings.
    assert _under(paused.out) == sorted(
        ["inputs", f"inputs/{paused.pipe.name}", LABELS_FILE, VERDICTS_FILE, MANIFEST_FILE]
    )
    first_ref = paused.written_first.stem
    assert first_ref not in (paused.out / LABELS_FILE).read_text(encoding="utf-8")
    assert first_ref not in (paused.out / VERDICTS_FILE).read_text(encoding="utf-8")
    manifest = json.loads((paused.out / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert (manifest["inputs"], manifest["patients"]) == (1, 1)
    assert manifest["content_sha256"] == content_digest(paused.out)


def test_an_export_that_crashes_after_a_patient_objected_leaves_nothing_of_theirs(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(tmp_path / "home"))
        env = seeded_env(tmp_path / "home")
        paused = _paused_export(env, tmp_path, "OBJECT-CRASH", results=3)
        # The third input cannot be written (its name is taken by a folder): the destination fails after
        # the objector's input was written, as a full disk would.
        paused.later[0].mkdir()
        record = Record(env.settings.record_url)
        try:
            with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
                exporter, exported = _in_thread(_export(env, record, paused.out))
                try:
                    _wait_for(paused.written_first, exporter)
                    _object(client, env, paused.first["patient"])
                finally:
                    _release(paused.pipe)
                    exporter.join(_LIVENESS_S)
            assert not exporter.is_alive() and isinstance(exported.get("error"), OSError), exported
            assert _exported_patients(record) == []
        finally:
            record.close()
    # Nothing of the objector's, nor of anyone's (the export was not audited), is left under the folder.
    assert not [p for p in paused.out.rglob("*") if p.is_file()], _under(paused.out)
    assert not any(paused.written_first.stem in p for p in _under(paused.out)), _under(paused.out)


_KILLED_EXPORT = """
import io, sys
from pathlib import Path
from inference.deid import deid_secret
from inference.record import AuditIn, Record
from inference.services._training_export import export_kept_inputs
url, keys, out = sys.argv[1:]
audit = AuditIn(subject="cli:killed", role="admin", facility=None, action="export:training-set")
export_kept_inputs(
    Record(url), out=Path(out), secret=deid_secret(Path(keys)), audit=audit, report=io.StringIO()
)
"""


def test_the_next_export_removes_what_a_killed_export_left_of_an_objectors_inputs(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(tmp_path / "home"))
        env = seeded_env(tmp_path / "home")
        paused = _paused_export(env, tmp_path, "KILLED")
        # An export killed (SIGKILL: no clean-up runs) while paused on its second input.
        args = [env.settings.record_url, str(env.settings.keys_dir), str(paused.out)]
        killed = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, *args])
        try:
            waited = threading.Event()
            while not paused.written_first.exists() and killed.poll() is None and not waited.wait(0.05):
                pass
            assert paused.written_first.exists(), "the export did not reach its second input"
        finally:
            killed.kill()
            killed.wait(_LIVENESS_S)
        with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
            _object(client, env, paused.first["patient"])
        report = io.StringIO()
        assert export_kept_training_set(env.settings, out=paused.out, stream=report) == 0, report.getvalue()
    assert "unfinished export" in report.getvalue()
    # Only the consenting patient's input is there: nothing of the objector's, nothing of the killed run.
    assert _under(paused.out) == sorted(
        ["inputs", f"inputs/{paused.pipe.name}", LABELS_FILE, VERDICTS_FILE, MANIFEST_FILE]
    )
    assert paused.written_first.stem not in (paused.out / LABELS_FILE).read_text(encoding="utf-8")
