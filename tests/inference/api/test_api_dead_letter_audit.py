"""Work outside HTTP requests is followable: the outbox worker's lines share an id per build, and an
operator's ``dxassist dead-letter retry`` is audited (who, which item, outcome) and shows in
``/fhir/AuditEvent`` like every other audited action, with the chain still verifying.

The server's organisation root is one the writers refuse, so the build of the filed result fails and
becomes a dead letter (``DXASSIST_BUILD_MAX_ATTEMPTS=1``); a delivery dead letter is put in the outbox
for a destination this server does not deliver to, so nothing but the operator touches it; a dead study
is a folder under ``dead-letter/studies``.
"""

from __future__ import annotations

import getpass
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, LogLines, TestClient, make_settings, new_study_uid
from _dxassist_cli import DXASSIST, dxassist_env
from fhir.resources.R4B.auditevent import AuditEvent

from inference.api import create_app
from inference.record import Record
from inference.record._outbox import OutboxObject

BAD_ORG_ROOT = "1.2.826.0.1.3680043.10.1453.11111111111.22222222222.33333333"
ACTION_SYSTEM = "urn:dxassist:action"


@pytest.fixture(scope="module")
def dead(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, LogLines]]:
    home = tmp_path_factory.mktemp("dxassist-dead-audit")
    destination = {
        "name": "vna",
        "kind": "stowrs",
        "url": "http://127.0.0.1:9/dicom-web",
        "timeout_seconds": 1,
    }
    lines = LogLines()
    logging.getLogger("inference").addHandler(lines)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DXASSIST_HOME", str(home))
            mp.setenv("DXASSIST_DESTINATIONS", json.dumps([destination]))
            mp.setenv("DXASSIST_BUILD_MAX_ATTEMPTS", "1")
            settings = make_settings(home, org_root=BAD_ORG_ROOT)
            tiny_models.seed_both(settings.model_cache, home / "build")
            with TestClient(create_app(settings)) as client:
                yield Env(home=home, settings=settings), client, lines
    finally:
        logging.getLogger("inference").removeHandler(lines)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _retry_entries(client: TestClient, env: Env, **params: str) -> list[dict[str, Any]]:
    answer = client.get(
        "/fhir/AuditEvent",
        params={"agent": f"cli:{getpass.getuser()}", "_count": "100", **params},
        headers=env.headers("auditor", facility=None),
    )
    assert answer.status_code == 200, answer.text
    events = [entry["resource"] for entry in answer.json().get("entry", [])]
    for event in events:
        AuditEvent.model_validate(event)
    return [e for e in events if e["subtype"][0] == {"system": ACTION_SYSTEM, "code": "dead-letter:retry"}]


def _entity(event: dict[str, Any], system_suffix: str) -> dict[str, Any]:
    [found] = [
        e
        for e in event["entity"]
        if e["what"].get("identifier", {}).get("system", "").endswith(system_suffix)
    ]
    return found


def test_builds_log_under_one_id_and_every_dead_letter_retry_is_audited(
    dead: tuple[Env, TestClient, LogLines],
) -> None:
    env, client, lines = dead
    study = new_study_uid()
    filed = client.post(
        "/v1/studies",
        files=[
            ("files", ("pa.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))
        ],
        headers=env.headers("pacs", facility="F1"),
    )
    assert filed.status_code == 201, filed.text
    result_id = filed.json()["result_id"]
    record = Record(env.settings.record_url)
    try:
        deadline = time.monotonic() + 60
        # The dead letter is committed, then logged (build_dead) by the worker's thread: wait for both.
        logged = lambda: any(getattr(r, "event", None) == "build_dead" for r in lines.records)  # noqa: E731
        while not (record.builds.dead() and logged()):
            assert time.monotonic() < deadline, "the outbox worker did not dead-letter the build"
            time.sleep(0.05)
        [build] = record.builds.dead()
        # The build's lines (its attempt, its dead letter) share one id of their own, not a request's.
        item = f"build:{build['id']}"
        mine = [r for r in lines.records if getattr(r, "item", None) == item]
        assert {getattr(r, "event", None) for r in mine} >= {"build_attempt", "build_dead"}
        ids = {getattr(r, "request_id", None) for r in mine}
        assert len(ids) == 1 and str(next(iter(ids))).startswith("build-"), ids
        assert filed.headers["X-Request-ID"] not in ids

        # A delivery dead letter, to a destination this server does not deliver to.
        obj = OutboxObject(
            kind="sr", object_uid=new_study_uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.88.22", payload=b"x"
        )
        record.outbox.enqueue(result_id=result_id, destinations=["elsewhere"], objects=[obj])
        delivery_id = _row_id(record, result_id)
        record.outbox.mark_dead(item_id=delivery_id, error="Refused.", code="destination_refused")
        found = record.results.get(result_id=result_id)
        assert found is not None
        patient_id = found.patient.id
    finally:
        record.close()
    # A dead study: its folder under dead-letter/studies.
    key = new_study_uid()
    folder = env.home / "dead-letter" / "studies" / key
    folder.mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"DICM")
    (folder / "dead-letter.json").write_text(json.dumps({"code": "analysis_failed", "attempts": 3}))

    ids_retried = [f"build:{build['id']}", f"delivery:{delivery_id}", f"study:{key}"]
    retried = _cli(env.home, "dead-letter", "retry", *ids_retried)
    assert retried.returncode == 0, retried.stderr
    assert (env.home / "incoming" / key / "a.dcm").exists()

    events = _retry_entries(client, env)
    by_item = {_entity(e, ":DeadLetter")["what"]["identifier"]["value"]: e for e in events}
    assert sorted(by_item) == sorted(ids_retried)
    for name, event in by_item.items():
        assert event["outcome"] == "0" and event["outcomeDesc"] == "success"
        assert event["action"] == "E" and event["type"]["code"] == "110100"
        assert event["agent"][0]["who"]["identifier"]["value"] == f"cli:{getpass.getuser()}"
        details = {d["type"]: d["valueString"] for d in _entity(event, ":DeadLetter")["detail"]}
        assert details["request-id"].startswith("retry-")
        patients = [e["what"]["reference"] for e in event.get("entity", []) if "reference" in e["what"]]
        # A build's and a delivery's entry name the patient of their result (so the facility's auditors
        # see it); a study's folder is not in the record: no patient.
        assert patients == ([] if name.startswith("study:") else [f"Patient/{patient_id}"])
    # One retry, one id across its entries.
    assert len({_entity(e, ":DeadLetter")["detail"][-1]["valueString"] for e in events}) == 1
    # The facility's auditor sees the entries about its patient.
    scoped = client.get(
        "/fhir/AuditEvent", params={"patient": patient_id, "_count": "100"}, headers=env.headers("auditor")
    )
    assert scoped.status_code == 200
    codes = [e["resource"]["subtype"][0]["code"] for e in scoped.json().get("entry", [])]
    assert codes.count("dead-letter:retry") == 2

    # Retrying a study whose folder went meanwhile is refused before anything moves: nothing audited.
    again = _cli(env.home, "dead-letter", "retry", f"study:{key}")
    assert again.returncode == 2 and "nothing was retried" in again.stderr
    assert len(_retry_entries(client, env)) == 3

    # A study whose folder cannot be moved back (a file stands where its incoming/ folder would go):
    # the command says so and exits 2, the study stays a dead letter, and the failed move is audited.
    stuck = new_study_uid()
    (env.home / "dead-letter" / "studies" / stuck).mkdir(parents=True)
    (env.home / "dead-letter" / "studies" / stuck / "a.dcm").write_bytes(b"DICM")
    reason = {"code": "analysis_failed", "attempts": 3}
    (env.home / "dead-letter" / "studies" / stuck / "dead-letter.json").write_text(json.dumps(reason))
    (env.home / "incoming" / stuck).write_bytes(b"")
    failed = _cli(env.home, "dead-letter", "retry", f"study:{stuck}")
    assert failed.returncode == 2 and "could not be moved back" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    # Still listed, with the error code it died of (its reason is removed only after a move succeeds).
    [listed] = [line for line in _cli(env.home, "dead-letter", "list").stdout.splitlines() if stuck in line]
    assert "analysis_failed" in listed, listed
    assert (env.home / "dead-letter" / "studies" / stuck / "a.dcm").exists()
    events = _retry_entries(client, env)
    [entry] = [
        e for e in events if _entity(e, ":DeadLetter")["what"]["identifier"]["value"] == f"study:{stuck}"
    ]
    assert entry["outcome"] == "4" and entry["outcomeDesc"] == "failure"
    verified = _cli(env.home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _row_id(record: Record, result_id: str) -> int:
    """The id of the outbox row queued for the destination nobody delivers to."""
    from sqlalchemy import select

    from inference.record._outbox import outbox

    with record.sessions() as session:
        return int(
            session.scalar(
                select(outbox.c.id).where(
                    outbox.c.result_id == result_id, outbox.c.destination == "elsewhere"
                )
            )
        )
