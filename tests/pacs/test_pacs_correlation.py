"""An operator follows one association, one analysis and one delivery through a real listener's logs.

``dxassist listen`` runs as a subprocess with Orthanc as its destination. A node the listener does not
know is refused; a registered one sends, in one association, a chest radiograph whose header is full of
patient names and identifiers, and a CT the listener refuses. Once the SR and the captures are sent the
listener is stopped and its JSON log read: every line of the sending association carries one ``assoc-``
id (and the refused association another), the analysis names that association and runs under an
``analysis-`` id that the result's audit entries carry as ``request_id``, each build and each delivery
attempt has an id shared by its lines, and no line holds a name, an identifier or the birth date.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import (
    LISTENER_AET,
    TEST_AET,
    Listener,
    Pacs,
    all_sent,
    dxassist,
    free_port,
    orthanc_destination,
    wait_until,
)
from test_pacs_phi_hygiene import NEEDLES, named_study

from inference.record import Record

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Run:
    """What the listener logged (parsed lines and the raw text) and its record's audit entries."""

    lines: list[dict[str, Any]]
    text: str
    audit: list[dict[str, Any]]
    study: str
    home: Path


def _ae(calling: str) -> Any:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


@pytest.fixture(scope="module")
def run(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from pydicom import dcmread

    root = tmp_path_factory.mktemp("correlation")
    home = root / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", root / "build")
    destination = orthanc_destination(pacs.orthanc.dicom_port)
    listener = Listener(home, free_port(), [destination])
    study = new_uid()
    listener.start()
    try:
        refused = _ae("INTRUDER").associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
        assert refused.is_rejected
        assoc = _ae(TEST_AET).associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
        assert assoc.is_established
        try:
            good = dcmread(BytesIO(named_study(study)))
            ct = dcmread(BytesIO(chest_cr(study=study, modality="CT")))
            statuses = [int(assoc.send_c_store(ds).Status) for ds in (good, ct)]
            assert statuses == [0x0000, 0xA900]
        finally:
            assoc.release()
        wait_until(
            lambda: all_sent(listener, study), timeout=120, interval=0.5, what="the SR and captures sent"
        )
    finally:
        listener.stop()
    log = home / "logs" / "listener.jsonl"
    text = log.read_text(errors="replace") + listener.log.read_text(errors="replace")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    record = Record(listener.record_url)
    try:
        _total, audit = record.audit.search(limit=500)
    finally:
        record.close()
    yield Run(lines=lines, text=text, audit=audit, study=study, home=home)


def _ids(lines: list[dict[str, Any]], event: str) -> set[str | None]:
    return {line.get("request_id") for line in lines if line.get("event") == event}


def test_the_lines_of_one_association_share_its_id(run: Run) -> None:
    [stored] = [line for line in run.lines if line.get("event") == "dimse_stored"]
    association = stored["request_id"]
    assert association.startswith("assoc-") and len(association) == len("assoc-") + 32
    events = [line.get("event") for line in run.lines if line.get("request_id") == association]
    assert events[0] == "association_accepted" and events[-1] == "association_released"
    assert {"dimse_stored", "dimse_refused"} <= set(events)
    [refused_id] = _ids(run.lines, "association_refused")
    assert refused_id is not None and refused_id.startswith("assoc-") and refused_id != association
    # The listener's own C-ECHO checks at start are associations too, each with its own id.
    accepted = _ids(run.lines, "association_accepted")
    assert association in accepted and len(accepted) >= 2


def test_the_analysis_names_its_association_and_its_audit_entries_carry_its_id(run: Run) -> None:
    association = next(line["request_id"] for line in run.lines if line.get("event") == "dimse_stored")
    [analysis] = [line for line in run.lines if line.get("event") == "dimse_analysis"]
    assert analysis["associations"] == [association]
    analysis_id = analysis["request_id"]
    assert analysis_id.startswith("analysis-")
    [filed] = [line for line in run.lines if line.get("event") == "imaging_result"]
    assert filed["request_id"] == analysis_id
    entries = [entry for entry in run.audit if entry["request_id"] == analysis_id]
    assert entries and {e["action"] for e in entries} >= {"studies:submit"}
    assert any(e["resource_id"] == filed["result_id"] for e in entries)
    # Besides the models it loaded at start (model:change, the process's own) and the deliveries (their
    # own attempts' ids, below), the listener audits only while it analyses: the filing and the kept
    # training input carry the analysis id.
    # A refused node is audited under its association's id (below).
    analysed = [
        e for e in run.audit if e["action"] not in ("model:change", "result:deliver", "dimse:associate")
    ]
    assert "studies:submit" in {e["action"] for e in analysed}
    assert {e["request_id"] for e in analysed} == {analysis_id}
    [refused_id] = _ids(run.lines, "association_refused")
    [intruder] = [e for e in run.audit if e["action"] == "dimse:associate"]
    assert (intruder["subject"], intruder["outcome"], intruder["request_id"]) == (
        "dimse:INTRUDER",
        "denied",
        refused_id,
    )


def test_each_build_and_delivery_attempt_has_an_id_its_lines_share(run: Run) -> None:
    sent = [line for line in run.lines if line.get("event") == "delivery_sent"]
    assert len(sent) >= 2  # the SR and at least one heatmap capture
    for line in sent:
        attempt = line["request_id"]
        assert attempt.startswith("delivery-")
        mine = [other for other in run.lines if other.get("request_id") == attempt]
        assert [other.get("event") for other in mine] == ["delivery_attempt", "delivery_sent"]
        assert {other.get("item") for other in mine} == {line["item"]}
    assert len({line["request_id"] for line in sent}) == len(sent)
    # Each object sent to Orthanc is audited (a disclosure) under the id of the attempt that sent it.
    delivered = [e for e in run.audit if e["action"] == "result:deliver"]
    # (The entry commits before its ``delivery_sent`` line: a line means an entry, not the other way.)
    assert {line["request_id"] for line in sent} <= {e["request_id"] for e in delivered}
    assert all(e["request_id"].startswith("delivery-") for e in delivered)
    assert all(e["outcome"] == "success" and e["resource_type"] == "Destination" for e in delivered)
    assert all(e["patient_id"] and e["subject"] == "dxassist-outbox" for e in delivered)
    [built] = [line for line in run.lines if line.get("event") == "build_done"]
    assert built["request_id"].startswith("build-")
    assert _ids(run.lines, "build_attempt") == {built["request_id"]}


def test_no_name_identifier_or_birth_date_in_the_correlated_lines(run: Run) -> None:
    assert run.lines
    leaks = [needle for needle in NEEDLES if needle.lower() in run.text.lower()]
    assert not leaks, leaks
    assert run.study not in run.text  # the Study Instance UID is not in a line either


def test_the_audit_trail_verifies_with_the_analysis_ids_under_its_hashes(run: Run) -> None:
    done = dxassist(run.home, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
