"""The kept-inputs training export holds the audit chain's head only for what the chain needs, as an
operator checks it on a real PostgreSQL: filings go on while a long export runs.

The export locked the head (every audited change waits for it) before reading its first input and held it
until its last file was written and its entries appended: every upload, vital signs filing or consent
change waited for the whole export. It now reads and writes without the head, then, in one short
transaction, locks it, leaves out the patients whose consent was withdrawn meanwhile and appends its
entries.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _postgres import new_postgres_database
from _security_env import Env, TestClient, seeded_env, upload
from test_security_export_patient_audit import _file_with_feedback

from inference.api import create_app
from inference.deid import deid_secret
from inference.record import AuditIn, Record
from inference.services._training_export import LABELS_FILE, STAGING, _ref, export_kept_inputs

_LIVENESS_S = 60.0  # a bound on waiting for the other thread, never an assertion on time
_EXPORTER = f"cli:exporter-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def env(postgres_server: str, tmp_path: Path) -> Iterator[Env]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(tmp_path / "home"))
        yield seeded_env(tmp_path / "home", database_url=new_postgres_database(postgres_server))


def _in_thread(work: Any) -> tuple[threading.Thread, dict[str, Any]]:
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["value"] = work()
        except BaseException as e:  # handed to the test, which asserts on it
            done["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def _wait_for(path: Path, thread: threading.Thread) -> None:
    waited = threading.Event()
    while not path.exists() and thread.is_alive() and not waited.wait(0.05):
        pass
    assert path.exists(), "the export did not reach its second input"


def test_filings_go_on_while_an_export_runs_and_a_consent_withdrawn_meanwhile_is_left_out(
    env: Env, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    results = sorted(
        (_file_with_feedback(env, source, f"IPP-LOCK-{n}-{uuid.uuid4().hex[:6]}") for n in range(2)),
        key=lambda r: str(r["result_id"]),
    )
    first, second = results  # exported in this order
    secret = deid_secret(env.settings.keys_dir)
    out = tmp_path / "export"
    staged = out / STAGING / "inputs"  # where the export writes until it is audited
    staged.mkdir(parents=True)
    # The export pauses on its second input: the file it writes is a pipe that nobody reads yet.
    pipe = staged / f"{_ref(secret, 'result', str(second['result_id']))}.npz"
    os.mkfifo(pipe)
    written_first = staged / f"{_ref(secret, 'result', str(first['result_id']))}.npz"

    record = Record(env.settings.record_url)
    app = create_app(env.settings)
    drained = False
    with TestClient(app, raise_server_exceptions=False) as client:
        audit = AuditIn(subject=_EXPORTER, role="admin", facility=None, action="export:training-set")
        exporter, exported = _in_thread(
            lambda: export_kept_inputs(record, out=out, secret=secret, audit=audit, report=io.StringIO())
        )
        try:
            _wait_for(written_first, exporter)
            # While the export is paused mid-run: a filing, and the first patient's objection.
            filing, filed = _in_thread(
                lambda: upload(client, env.headers("pacs", facility="F1"), patient_id="IPP-LOCK-NEW")
            )
            filing.join(_LIVENESS_S)
            assert not filing.is_alive(), "the filing waited for the export"
            assert filed["value"].status_code == 201, filed["value"].text
            objection = {"ai_processing": "deny", "national_sharing": "permit"}
            path = f"/v1/patients/{first['patient']['id']}/consent"
            withdrawing, withdrawn = _in_thread(
                lambda: client.put(path, json=objection, headers=env.headers("clinician", facility="F1"))
            )
            withdrawing.join(_LIVENESS_S)
            assert not withdrawing.is_alive(), "the consent change waited for the export"
            assert withdrawn["value"].status_code == 200, withdrawn["value"].text
            assert exporter.is_alive()  # still paused on its second input
        finally:
            with open(pipe, "rb") as reader:  # let the export go on
                reader.read()
            drained = True
            exporter.join(_LIVENESS_S)
    assert drained and not exporter.is_alive()
    assert "error" not in exported, exported.get("error")
    try:
        _total, entries = record.audit.search(limit=500)
        assert record.audit.verify().ok
    finally:
        record.close()

    # The patient who objected while the export ran is left out: no input, no row, no entry.
    assert not (out / "inputs" / written_first.name).exists() and not written_first.exists()
    labels = (out / LABELS_FILE).read_text(encoding="utf-8")
    assert written_first.name not in labels and pipe.name in labels
    exports = [e for e in entries if e["subject"] == _EXPORTER]
    assert [e["patient_id"] for e in exports] == [second["patient"]["id"]]
    # On the trail, the filing and the objection made while the export ran are before its entries.
    new_patient = filed["value"].json()["patient"]["id"]
    filings = [e for e in entries if e["patient_id"] == new_patient]
    assert filings and max(int(e["seq"]) for e in filings) < min(int(e["seq"]) for e in exports)
    objected = [
        e for e in entries if e["action"] == "consent:write" and e["patient_id"] == first["patient"]["id"]
    ]
    assert objected and max(int(e["seq"]) for e in objected) < min(int(e["seq"]) for e in exports)
