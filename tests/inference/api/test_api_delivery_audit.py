"""Sending a result to a destination discloses health data, so each delivery is audited.

Two STOW-RS destinations the test runs on 127.0.0.1 accept everything; a third (a closed port) never
answers, and with one attempt allowed its objects go to the dead-letter state. Every object sent gets an
entry (IHE ATNA "DICOM Instances Transferred", DICOM 110104) naming the patient, the destination and the
attempt's ``delivery-`` id; every object given up gets one with outcome failure. The facility's auditor
sees them in its patient-scoped search, and the chain still verifies.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, LogLines, TestClient, make_settings, new_study_uid
from _dxassist_cli import DXASSIST, dxassist_env
from _stow_destination import stow_destination
from fhir.resources.R4B.auditevent import AuditEvent

from inference.api import create_app
from inference.record import Record

ACTION_SYSTEM = "urn:dxassist:action"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, LogLines]]:
    home = tmp_path_factory.mktemp("dxassist-delivery-audit")
    lines = LogLines()
    logging.getLogger("inference").addHandler(lines)
    try:
        with (
            stow_destination() as (url_a, _a),
            stow_destination() as (url_b, _b),
            pytest.MonkeyPatch.context() as mp,
        ):
            destinations = [
                {"name": "pacs-a", "kind": "stowrs", "url": url_a, "timeout_seconds": 5},
                {"name": "vna-b", "kind": "stowrs", "url": url_b, "timeout_seconds": 5},
                {
                    "name": "down",
                    "kind": "stowrs",
                    "url": "http://127.0.0.1:9/dicom-web",
                    "timeout_seconds": 1,
                },
            ]
            mp.setenv("DXASSIST_HOME", str(home))
            mp.setenv("DXASSIST_DESTINATIONS", json.dumps(destinations))
            mp.setenv("DXASSIST_DELIVERY_POLL_SECONDS", "0.1")
            mp.setenv("DXASSIST_DELIVERY_MAX_ATTEMPTS", "1")
            settings = make_settings(home)
            tiny_models.seed_both(settings.model_cache, home / "build")
            with TestClient(create_app(settings)) as client:
                yield Env(home=home, settings=settings), client, lines
    finally:
        logging.getLogger("inference").removeHandler(lines)


def _upload(client: TestClient, env: Env, *, patient_id: str) -> dict[str, Any]:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=patient_id)
    response = client.post(
        "/v1/studies",
        files=[("files", ("pa.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _settled(client: TestClient, env: Env, result_id: str) -> list[dict[str, Any]]:
    """The result's deliveries once none is pending any more."""
    deadline = time.monotonic() + 60
    while True:
        response = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist"))
        assert response.status_code == 200, response.text
        deliveries = list(response.json()["deliveries"])
        if deliveries and all(d["kind"] != "outputs" and d["state"] != "pending" for d in deliveries):
            return deliveries
        assert time.monotonic() < deadline, f"the deliveries did not settle: {deliveries}"
        time.sleep(0.1)


def _events(client: TestClient, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    answer = client.get("/fhir/AuditEvent", params={"_count": "500", **params}, headers=headers)
    assert answer.status_code == 200, answer.text
    events = [entry["resource"] for entry in answer.json().get("entry", [])]
    for event in events:
        AuditEvent.model_validate(event)
    return [e for e in events if e["subtype"][0] == {"system": ACTION_SYSTEM, "code": "result:deliver"}]


def _request_id(event: dict[str, Any]) -> str:
    [destination] = [e for e in event["entity"] if "identifier" in e["what"]]
    return {d["type"]: d["valueString"] for d in destination["detail"]}["request-id"]


def test_every_delivery_and_every_given_up_one_is_audited_for_the_patients_facility(
    audited: tuple[Env, TestClient, LogLines],
) -> None:
    env, client, lines = audited
    patient = f"IPP-DLV-{uuid.uuid4().hex[:6]}"
    result = _upload(client, env, patient_id=patient)
    deliveries = _settled(client, env, result["result_id"])
    states = Counter((d["destination"], d["state"]) for d in deliveries)
    objects = len(deliveries) // 3
    assert objects >= 2  # the SR and at least one capture
    assert states == {("pacs-a", "sent"): objects, ("vna-b", "sent"): objects, ("down", "dead"): objects}

    record = Record(env.settings.record_url)
    try:
        found = record.results.get(result_id=result["result_id"])
        assert found is not None
        patient_id = found.patient.id
    finally:
        record.close()

    # The facility's auditor, in its patient-scoped search, sees one entry per object and destination.
    events = _events(client, env.headers("auditor", facility="F1"), patient=patient_id)
    by_destination: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_destination.setdefault(event["agent"][1]["who"]["identifier"]["value"], []).append(event)
    assert {name: len(found) for name, found in by_destination.items()} == {
        "pacs-a": objects,
        "vna-b": objects,
        "down": objects,
    }
    for name, found_events in by_destination.items():
        for event in found_events:
            assert event["type"] == {
                "system": DCM,
                "code": "110104",
                "display": "DICOM Instances Transferred",
            }
            assert event["action"] == "R"
            assert event["agent"][0]["who"]["identifier"]["value"] == "dxassist-outbox"
            assert event["agent"][0]["location"]["identifier"]["value"] == "F1"
            assert event["agent"][1]["type"]["coding"][0]["code"] == "110152"
            assert {"reference": f"Patient/{patient_id}"} in [e["what"] for e in event["entity"]]
            if name == "down":
                assert (event["outcome"], event["outcomeDesc"]) == ("4", "failure")
            else:
                assert (event["outcome"], event["outcomeDesc"]) == ("0", "success")
    # Each entry carries its own attempt's id, the id of that attempt's log lines.
    ids = [_request_id(e) for e in events]
    assert all(i.startswith("delivery-") for i in ids) and len(set(ids)) == len(ids)

    def logged() -> set[str | None]:
        return {
            getattr(r, "request_id", None)
            for r in lines.records
            if getattr(r, "event", None) in ("delivery_sent", "delivery_dead")
        }

    # An attempt's line is written once its outcome is committed (the worker's thread): a moment later.
    deadline = time.monotonic() + 30
    while not set(ids) <= logged():
        assert time.monotonic() < deadline, (set(ids) - logged(), "attempts with no log line")
        time.sleep(0.05)

    # An auditor of another facility does not see them; the whole trail still verifies.
    assert _events(client, env.headers("auditor", facility="F2"), patient=patient_id) == []
    verified = subprocess.run(
        [str(DXASSIST), "audit", "verify"],
        env=dxassist_env(env.home),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_patient_who_objected_to_sharing_has_no_delivery_entries(
    audited: tuple[Env, TestClient, LogLines],
) -> None:
    env, client, _lines = audited
    identifier = f"IPP-NOSHARE-{uuid.uuid4().hex[:6]}"
    consent = {"patient": {"identifier": identifier}, "ai_processing": "permit", "national_sharing": "deny"}
    recorded = client.post("/v1/consents", json=consent, headers=env.headers("clinician", facility="F1"))
    assert recorded.status_code == 200, recorded.text
    private = _upload(client, env, patient_id=identifier)
    assert private["deliveries"] == []
    # A later result of another patient settles: the outbox worked meanwhile.
    later = _upload(client, env, patient_id=f"IPP-DLV-{uuid.uuid4().hex[:6]}")
    _settled(client, env, later["result_id"])
    record = Record(env.settings.record_url)
    try:
        found = record.results.get(result_id=private["result_id"])
        assert found is not None
        patient_id = found.patient.id
    finally:
        record.close()
    assert _events(client, env.headers("auditor", facility=None), patient=patient_id) == []
