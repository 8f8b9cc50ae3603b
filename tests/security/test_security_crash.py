"""``kill -9`` of ``dxassist serve`` during a burst of uploads and vital signs, then a restart: every result
has exactly one audit entry (they are committed together), every imaging result reaches the outbox of
the configured destination (its pending output build is committed with it, and the restarted server's
worker builds what the killed one left) except those of a patient who objected to sharing, which
reach it under no path, ``dxassist audit verify`` passes, and a trail
re-chained or cut by someone with full database rights fails it (the head is anchored outside the
database, in a signed file under ``DXASSIST_HOME``).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import tiny_models
from _security_env import chest_dicom, make_settings, new_study_uid

from inference.security import issue_token

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _audit_tamper import cut_tail, rechain  # noqa: E402
from _dxassist_cli import DXASSIST, dxassist_env  # noqa: E402
from _loopback import free_port  # noqa: E402

_OBJECTOR = "IPP-NO-SHARING"


def _serve(home: Path, port: int, log: Path, destination: str) -> subprocess.Popen[bytes]:
    env = {
        **dxassist_env(home),
        "DXASSIST_MODEL_WATCH_SECONDS": "0",
        "DXASSIST_PREPROCESS_WORKERS": "1",
        # A PACS that is down: the outputs wait in the outbox, which is what this test looks at.
        "DXASSIST_DESTINATIONS": json.dumps(
            [{"name": "pacs", "kind": "stowrs", "url": destination, "timeout_seconds": 2}]
        ),
        "DXASSIST_DELIVERY_POLL_SECONDS": "0.2",
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(DXASSIST), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, trust_env=False).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "dxassist serve never became ready"
        time.sleep(0.2)


def _verify(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), "audit", "verify"],
        env={**dxassist_env(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _burst(base: str, headers: dict[str, str], stop: threading.Event, done: list[str]) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False) as client:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if n % 2:
                    study = new_study_uid()
                    # The first study of each sender is of the patient who objected to sharing.
                    patient = _OBJECTOR if n == 1 else f"IPP-{uuid.uuid4().hex[:8]}"
                    blob = chest_dicom(study=study, sop=f"{study}.1", patient_id=patient)
                    answer = client.post(
                        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))]
                    )
                else:
                    body = {"patient": {"identifier": f"IPP-{uuid.uuid4().hex[:8]}"}, "respiratory_rate": 20}
                    answer = client.post("/v1/vitals", json=body)
            except httpx.HTTPError:
                return  # the server was killed
            if answer.status_code in (200, 201):
                done.append("study" if n % 2 else "vitals")


def _unqueued(db: Path, objector: str) -> set[str]:
    """Imaging results of sharing patients with no report (SR) in the outbox of the destination."""
    with sqlite3.connect(db) as connection:
        return {
            row[0]
            for row in connection.execute(
                "SELECT id FROM results WHERE kind = 'imaging' AND patient_id != ? AND id NOT IN "
                "(SELECT result_id FROM outbox WHERE kind = 'sr' AND destination = 'pacs')",
                (objector,),
            )
        }


def _open_builds(db: Path) -> int:
    """Output builds not done: claimed or due, or claimed by the killed server and still leased to it."""
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT count(*) FROM output_builds WHERE state != 'done'").fetchone()
    return int(row[0])


@pytest.mark.integration
def test_kill_9_during_a_burst_leaves_no_unaudited_result_and_a_rechained_trail_fails(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    settings = make_settings(home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    destination = f"http://127.0.0.1:{free_port()}/dicom-web"
    server = _serve(home, port, log, destination)
    pacs = {"Authorization": f"Bearer {issue_token(settings, subject='pacs', role='pacs', facility='F1')}"}
    nurse = {"Authorization": f"Bearer {issue_token(settings, subject='n', role='clinician', facility='F1')}"}
    # A patient of the facility who objected to sharing: their results never reach the PACS.
    first = httpx.post(
        f"{base}/v1/vitals",
        json={"patient": {"identifier": _OBJECTOR}, "respiratory_rate": 18},
        headers=nurse,
        timeout=60,
        trust_env=False,
    )
    assert first.status_code == 201, first.text
    objector = first.json()["patient"]["id"]
    consent = httpx.put(
        f"{base}/v1/patients/{objector}/consent",
        json={"ai_processing": "permit", "national_sharing": "deny"},
        headers=nurse,
        timeout=60,
        trust_env=False,
    )
    assert consent.status_code == 200, consent.text
    stop, done = threading.Event(), list[str]()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for headers in (pacs, nurse, pacs, nurse):
            pool.submit(_burst, base, headers, stop, done)
        deadline = time.monotonic() + 300
        while len(done) < 12 or done.count("study") < 4:
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)  # in the middle of the burst: requests are in flight
        server.wait(timeout=30)
        stop.set()
    db = home / "record.db"
    # A restart runs the migrations and serves again; its worker builds the outputs the killed server left
    # unbuilt (once their filing lease ends); then it stops cleanly. The wait is for the reports queued
    # and for every build done (a build claimed by the killed server stays leased to it for a minute).
    server = _serve(home, port, log, destination)
    deadline = time.monotonic() + 300
    while _unqueued(db, objector) or _open_builds(db):
        assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)

    with sqlite3.connect(db) as connection:
        imaging = {
            row[0]
            for row in connection.execute(
                "SELECT id FROM results WHERE kind = 'imaging' AND patient_id != ?", (objector,)
            )
        }
        withheld = {
            row[0]
            for row in connection.execute(
                "SELECT id FROM results WHERE kind = 'imaging' AND patient_id = ?", (objector,)
            )
        }
        reports = connection.execute(
            "SELECT result_id, count(*) FROM outbox WHERE kind = 'sr' AND destination = 'pacs' "
            "GROUP BY result_id"
        ).fetchall()
        open_builds = connection.execute(
            "SELECT count(*) FROM output_builds WHERE state != 'done'"
        ).fetchone()
    assert imaging, "the burst filed no imaging result"
    assert withheld, "no study of the objecting patient was filed"
    assert {rid for rid, _n in reports} == imaging, "an imaging result filed without its outbox rows"
    with sqlite3.connect(db) as connection:
        leaked = connection.execute(
            "SELECT count(*) FROM outbox JOIN results ON results.id = outbox.result_id "
            "WHERE results.patient_id = ?",
            (objector,),
        ).fetchone()
    assert leaked == (0,), "a result of a patient who objected to sharing was queued for the PACS"
    assert all(n == 1 for _rid, n in reports), "an SR queued twice for one destination"
    assert open_builds == (0,)

    with sqlite3.connect(db) as connection:
        results = {row[0] for row in connection.execute("SELECT id FROM results")}
        filed = connection.execute(
            "SELECT resource_id, count(*) FROM audit_events WHERE outcome IN ('success', 'duplicate') "
            "AND action IN ('studies:submit', 'vitals:submit') GROUP BY resource_id"
        ).fetchall()
    assert len(results) >= 12
    assert {rid for rid, _n in filed} == results, "a result without its audit entry, or the reverse"
    assert all(n == 1 for _rid, n in filed)

    intact = _verify(home)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "anchored at seq" in intact.stdout
    anchored = json.loads((home / "audit" / "head.json").read_text())
    assert anchored["seq"] >= len(results)

    # A cut tail: the last entries deleted and the head moved back (a consistent, shorter chain).
    cut = tmp_path / "cut.db"
    # Through SQLite's backup: pages still in the write-ahead log are copied too.
    source, target = sqlite3.connect(db), sqlite3.connect(cut)
    source.backup(target)
    source.close()
    target.close()
    cut_tail(cut, 3)
    truncated = _verify(home, DXASSIST_DATABASE_URL=f"sqlite:///{cut}")
    assert truncated.returncode == 1 and "tail was removed" in truncated.stdout, truncated.stdout

    # A full re-chain: the first entry's subject rewritten and every hash recomputed.
    rechain(db, "UPDATE audit_events SET subject = 'someone-else' WHERE seq = 1")
    rechained = _verify(home)
    assert rechained.returncode == 1, rechained.stdout
    assert "re-chained" in rechained.stdout
