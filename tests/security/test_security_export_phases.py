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
import os
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

from inference.api import create_app
from inference.deid import deid_secret
from inference.record import AuditIn, Record
from inference.record import _engine as record_engine
from inference.services._training_export import LABELS_FILE, _ref, export_kept_inputs

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


def _paused_export(env: Env, tmp_path: Path, tag: str) -> Paused:
    source = tmp_path / "source"
    source.mkdir()
    results = sorted(
        (_file_with_feedback(env, source, f"IPP-{tag}-{n}-{uuid.uuid4().hex[:6]}") for n in range(2)),
        key=lambda r: str(r["result_id"]),
    )
    first, second = results  # exported in this order
    secret = deid_secret(env.settings.keys_dir)
    out = tmp_path / "export"
    inputs = out / "inputs"
    inputs.mkdir(parents=True)
    pipe = inputs / f"{_ref(secret, 'result', str(second['result_id']))}.npz"
    os.mkfifo(pipe)
    written_first = inputs / f"{_ref(secret, 'result', str(first['result_id']))}.npz"
    return Paused(out, first, second, written_first, pipe)


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
