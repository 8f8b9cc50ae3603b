"""``dxassist dead-letter discard``: an operator gives up on dead letters for good, and what will never be
sent stops holding patient data. A discarded delivery keeps its row but not its bytes, a discarded build
its row but not its source header, a discarded study's folder is deleted; none is listed, counted or
retried again, and each discard is on the audit trail (``dead-letter:discard``, one entry per item, with
its outcome), rendered as a FHIR AuditEvent of action D."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _record_data import imaging, migrate, patient, uid
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import func, select

from inference.record import ImagingResult, OutputsIn, Record
from inference.record._builds import output_builds
from inference.record._outbox import OutboxObject, outbox
from inference.record.fhir import audit_events
from inference.services import DeadLetterError, discard_dead_letters, list_dead_letters, retry_dead_letters
from inference.services._dead_letters import DeadLetterGauge

SR = "1.2.840.10008.5.1.4.1.1.88.33"
SC = "1.2.840.10008.5.1.4.1.1.7"
CAPTURE = bytes(range(256)) * 12_000  # 3 MB: a heatmap capture's order of size
OPERATOR = "cli:night-operator"


def _filed(record: Record, identifier: str, study_uid: str | None = None) -> str:
    """A filed result whose outputs are owed to ``pacs`` (its build pending): its id."""
    data = replace(
        imaging(pat=patient(identifier), study_uid=study_uid),
        outputs=OutputsIn(destinations=("pacs",), spool=None, source=b"the source header"),
    )
    return record.results.save_imaging(data=data).result_id


def _queued(record: Record, identifier: str, study_uid: str | None = None) -> str:
    """A filed result with its SR and a capture queued for ``pacs``: its id."""
    result_id = _filed(record, identifier, study_uid)
    job = record.builds.claim_next()
    assert job is not None and job.result_id == result_id
    objects = [OutboxObject("sr", uid(), SR, b"DICM-sr" * 100), OutboxObject("sc", uid(), SC, CAPTURE)]
    record.outbox.enqueue(result_id=result_id, destinations=["pacs"], objects=objects, build_id=job.id)
    return result_id


def _kill_all(record: Record, *, now: datetime | None = None) -> None:
    """Every pending ``pacs`` object refused for good (dead since ``now``)."""
    while (item := record.outbox.claim_next(destination="pacs")) is not None:
        record.outbox.mark_dead(item_id=item.id, error="Refused.", code="destination_refused", now=now)


def _rows(record: Record, result_id: str) -> list[tuple[str, str, int]]:
    """``(kind, state, bytes held)`` of each outbox row of ``result_id``, in queue order."""
    query = (
        select(outbox.c.kind, outbox.c.state, func.length(outbox.c.payload))
        .where(outbox.c.result_id == result_id)
        .order_by(outbox.c.id)
    )
    with record.sessions() as session:
        return [(kind, state, int(size)) for kind, state, size in session.execute(query)]


def _discards(record: Record) -> list[dict[str, Any]]:
    """The audit entries of the operator's discards, oldest first."""
    entries = record.audit.search(agent=OPERATOR, limit=100)[1]
    return sorted((e for e in entries if e["action"] == "dead-letter:discard"), key=lambda e: e["seq"])


def _dead_study(home: Path, key: str, *, dead_at: datetime | None = None) -> Path:
    folder = home / "dead-letter" / "studies" / key
    folder.mkdir(parents=True)
    (folder / "1.dcm").write_bytes(b"DICM" + b"\0" * 1000)
    reason: dict[str, Any] = {"code": "analysis_failed", "attempts": 3}
    if dead_at is not None:
        reason["dead_at"] = dead_at.isoformat(timespec="seconds")
    (folder / "dead-letter.json").write_text(json.dumps(reason))
    return folder


def _gauge(record: Record, home: Path) -> dict[str, float]:
    gauge = DeadLetterGauge.attach(record, home)
    try:
        [family] = list(gauge.collect())
        return {sample.labels["kind"]: sample.value for sample in family.samples}
    finally:
        gauge.detach(record)


def test_a_discarded_delivery_keeps_no_bytes_and_is_never_retried(record: Record, tmp_path: Path) -> None:
    result_id = _queued(record, "IPP-DISCARD-1")
    _kill_all(record)
    assert _rows(record, result_id) == [("sr", "dead", 700), ("sc", "dead", len(CAPTURE))]
    ids = [item.id for item in list_dead_letters(record=record, home=tmp_path, subject=OPERATOR)]
    assert len(ids) == 2 and all(i.startswith("delivery:") for i in ids)
    assert _gauge(record, tmp_path)["delivery"] == 2

    assert discard_dead_letters(record=record, home=tmp_path, ids=ids, subject=OPERATOR) == ids
    # The rows stay (the result says what became of each object) without a byte of the patient's data.
    assert _rows(record, result_id) == [("sr", "discarded", 0), ("sc", "discarded", 0)]
    found = record.results.get(result_id=result_id, deliveries=True)
    assert isinstance(found, ImagingResult)
    assert [(d.kind, d.state, d.error) for d in found.deliveries] == [
        ("sr", "discarded", "destination_refused"),
        ("sc", "discarded", "destination_refused"),
    ]
    # Gone from the queue: not listed, not counted, not retried (by id or with everything else).
    assert list_dead_letters(record=record, home=tmp_path, subject=OPERATOR) == []
    assert _gauge(record, tmp_path)["delivery"] == 0
    with pytest.raises(DeadLetterError, match="Not in the dead-letter queue"):
        retry_dead_letters(record=record, home=tmp_path, ids=ids[:1], subject=OPERATOR)
    assert retry_dead_letters(record=record, home=tmp_path, every=True, subject=OPERATOR) == []
    assert record.outbox.requeue() == []
    assert record.outbox.claim_next(destination="pacs") is None
    # One audit entry per object, naming the result's patient, as a FHIR deletion.
    entries = _discards(record)
    assert [(e["resource_id"], e["outcome"]) for e in entries] == [(i, "success") for i in ids]
    assert {e["patient_id"] for e in entries} == {found.patient.id}
    event = audit_events.audit_event(entries[0])
    AuditEvent.model_validate(event)
    assert (event["type"]["code"], event["action"], event["outcome"]) == ("110110", "D", "0")


def test_listing_the_dead_letters_puts_each_one_shown_on_the_trail(record: Record, tmp_path: Path) -> None:
    # What an operator lists names results and studies (health data): each item shown is on the trail,
    # under the operator's name, with the patient of its result, so each facility's auditor finds it.
    delivered = _queued(record, "IPP-LIST-1")
    _kill_all(record)
    built = _filed(record, "IPP-LIST-2")
    job = record.builds.claim_next()
    assert job is not None and job.result_id == built
    record.builds.mark_dead(job_id=job.id, code="build_failed", error="ValueError")
    _dead_study(tmp_path, "NODE_1.2.826.0.1.3680043.8.498.7171")

    listed = list_dead_letters(record=record, home=tmp_path, subject=OPERATOR)
    assert [item.kind for item in listed] == ["study", "build", "delivery", "delivery"]
    patients = {}
    for result_id in (delivered, built):
        found = record.results.get(result_id=result_id)
        assert found is not None
        patients[result_id] = found.patient.id
    reads = _reads(record)
    assert [(e["resource_type"], e["resource_id"], e["patient_id"], e["outcome"]) for e in reads] == [
        ("DeadLetter", item.id, patients.get(item.subject), "success") for item in listed
    ]
    assert {e["role"] for e in reads} == {"admin"}
    # The facility that filed the results finds who listed their dead letters in its part of the trail.
    seen = record.audit.search(facility="north", limit=100)[1]
    assert {e["resource_id"] for e in seen if e["action"] == "dead-letter:read"} == {
        item.id for item in listed if item.kind != "study"
    }
    # An empty list (of one kind) is a listing too: one entry naming nothing.
    record.outbox.discard(ids=[int(i.id.split(":")[1]) for i in listed[2:]], audit=_asked())
    assert list_dead_letters(record=record, home=tmp_path, kind="delivery", subject=OPERATOR) == []
    assert [(e["resource_id"], e["patient_id"]) for e in _reads(record)[len(reads) :]] == [(None, None)]


def _asked() -> dict[str, Any]:
    return {
        "time": datetime.now(UTC),
        "subject": OPERATOR,
        "role": "admin",
        "facility": None,
        "client": None,
        "action": "dead-letter:discard",
    }


def _reads(record: Record) -> list[dict[str, Any]]:
    """The audit entries of the operator's listings, oldest first."""
    entries = record.audit.search(agent=OPERATOR, limit=100)[1]
    return sorted((e for e in entries if e["action"] == "dead-letter:read"), key=lambda e: e["seq"])


def test_a_discarded_sr_is_never_named_as_the_report_a_new_one_supersedes(record: Record) -> None:
    study = uid()
    first = _queued(record, "IPP-DISCARD-2", study_uid=study)
    while (item := record.outbox.claim_next(destination="pacs")) is not None:
        record.outbox.mark_sent(item_id=item.id)
    second = _queued(record, "IPP-DISCARD-2", study_uid=study)
    _kill_all(record)
    assert record.outbox.discard(ids=_ids(record, second), audit=_who()) != []
    third = _filed(record, "IPP-DISCARD-2", study_uid=study)
    # The PACS holds the first SR; the second never reached it (and holds no bytes now).
    assert record.outbox.prior_report(result_id=third, destination="pacs") == b"DICM-sr" * 100
    assert [state for _, state, _ in _rows(record, first)] == ["sent", "sent"]


def _ids(record: Record, result_id: str) -> list[int]:
    with record.sessions() as session:
        return list(session.scalars(select(outbox.c.id).where(outbox.c.result_id == result_id)))


def _who() -> dict[str, Any]:
    return {
        "subject": OPERATOR,
        "role": "admin",
        "facility": None,
        "client": None,
        "action": "dead-letter:discard",
        "time": datetime.now(UTC),
    }


def test_a_discarded_build_drops_its_source_and_owes_nothing(record: Record, tmp_path: Path) -> None:
    result_id = _filed(record, "IPP-DISCARD-3")
    job = record.builds.claim_next()
    assert job is not None
    record.builds.mark_dead(job_id=job.id, code="output_build_failed", error="ValueError")
    found = record.results.get(result_id=result_id, deliveries=True)
    assert isinstance(found, ImagingResult) and found.build is not None
    assert _gauge(record, tmp_path)["build"] == 1

    build_id = f"build:{job.id}"
    assert discard_dead_letters(record=record, home=tmp_path, ids=[build_id], subject=OPERATOR) == [build_id]
    with record.sessions() as session:
        row = session.execute(select(output_builds).where(output_builds.c.id == job.id)).one()
    assert (row.state, row.source, row.spool) == ("discarded", None, None)
    # The result no longer says its outputs are owed (no "outputs" entry, no build warning).
    found = record.results.get(result_id=result_id, deliveries=True)
    assert isinstance(found, ImagingResult)
    assert found.build is None and found.deliveries == ()
    assert record.builds.claim_next() is None and record.builds.requeue() == []
    assert list_dead_letters(record=record, home=tmp_path, subject=OPERATOR) == []
    assert _gauge(record, tmp_path)["build"] == 0
    [entry] = _discards(record)
    assert (entry["resource_id"], entry["outcome"], entry["patient_id"]) == (
        build_id,
        "success",
        found.patient.id,
    )


def test_a_discarded_study_is_deleted_from_disk(record: Record, tmp_path: Path) -> None:
    key = uid()
    folder = _dead_study(tmp_path, key)
    assert _gauge(record, tmp_path)["study"] == 1
    assert discard_dead_letters(record=record, home=tmp_path, ids=[f"study:{key}"], subject=OPERATOR) == [
        f"study:{key}"
    ]
    assert not folder.exists()
    assert not (tmp_path / "incoming").exists()  # deleted, not handed back
    assert list_dead_letters(record=record, home=tmp_path, subject=OPERATOR) == []
    assert _gauge(record, tmp_path)["study"] == 0
    [entry] = _discards(record)
    assert (entry["resource_id"], entry["outcome"], entry["patient_id"]) == (f"study:{key}", "success", None)

    # A folder that cannot be deleted (here a link where the folder was): the discard says so, the
    # failure is audited, and the study is still listed.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "1.dcm").write_bytes(b"DICM")
    stuck = uid()
    (tmp_path / "dead-letter" / "studies" / stuck).symlink_to(elsewhere)
    with pytest.raises(DeadLetterError, match="could not be deleted"):
        discard_dead_letters(record=record, home=tmp_path, ids=[f"study:{stuck}"], subject=OPERATOR)
    assert (elsewhere / "1.dcm").exists()
    assert [item.id for item in list_dead_letters(record=record, home=tmp_path, subject=OPERATOR)] == [
        f"study:{stuck}"
    ]
    assert [(e["resource_id"], e["outcome"]) for e in _discards(record)][-1] == (f"study:{stuck}", "failure")


def test_older_than_leaves_the_younger_dead_letters(record: Record, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old_result = _queued(record, "IPP-DISCARD-4")
    _kill_all(record, now=now - timedelta(days=40))
    young_result = _queued(record, "IPP-DISCARD-5")
    _kill_all(record, now=now - timedelta(days=2))
    old_study, young_study, undated = uid(), uid(), uid()
    _dead_study(tmp_path, old_study, dead_at=now - timedelta(days=31))
    _dead_study(tmp_path, young_study, dead_at=now - timedelta(hours=1))
    _dead_study(tmp_path, undated)  # its reason file does not say when: kept

    gone = discard_dead_letters(
        record=record, home=tmp_path, every=True, older_than=timedelta(days=30), subject=OPERATOR
    )
    assert sorted(gone) == sorted(
        [f"study:{old_study}"] + [f"delivery:{n}" for n in _ids(record, old_result)]
    )
    assert [state for _, state, _ in _rows(record, old_result)] == ["discarded", "discarded"]
    assert [state for _, state, _ in _rows(record, young_result)] == ["dead", "dead"]
    left = {item.id for item in list_dead_letters(record=record, home=tmp_path, subject=OPERATOR)}
    assert left == {f"study:{young_study}", f"study:{undated}"} | {
        f"delivery:{n}" for n in _ids(record, young_result)
    }
    assert sorted(e["resource_id"] for e in _discards(record)) == sorted(gone)
    # --kind narrows --all.
    only = discard_dead_letters(record=record, home=tmp_path, every=True, kind="study", subject=OPERATOR)
    assert sorted(only) == sorted([f"study:{young_study}", f"study:{undated}"])
    assert [state for _, state, _ in _rows(record, young_result)] == ["dead", "dead"]


def test_a_malformed_or_unknown_id_discards_nothing(record: Record, tmp_path: Path) -> None:
    result_id = _queued(record, "IPP-DISCARD-6")
    _kill_all(record)
    key = uid()
    folder = _dead_study(tmp_path, key)
    known = [f"study:{key}"] + [f"delivery:{n}" for n in _ids(record, result_id)]
    for bad in ("nonsense", "delivery:x", "build:999999", "study:../../etc"):
        with pytest.raises(DeadLetterError, match="dead-letter"):
            discard_dead_letters(record=record, home=tmp_path, ids=[*known, bad], subject=OPERATOR)
    with pytest.raises(DeadLetterError, match="--all"):
        discard_dead_letters(
            record=record, home=tmp_path, ids=known, older_than=timedelta(days=1), subject=OPERATOR
        )
    assert (folder / "1.dcm").exists()
    assert [state for _, state, _ in _rows(record, result_id)] == ["dead", "dead"]
    assert _discards(record) == []


def test_migration_0016_downgrades_discarded_rows_to_the_older_terminal_states(record: Record) -> None:
    """Revision 0015 has no ``discarded`` state: a downgrade makes such deliveries ``withheld`` and such
    builds ``done`` (terminal, bytes-less, never retried), and the upgrade allows ``discarded`` again."""
    delivered = _queued(record, "IPP-DISCARD-7")
    _kill_all(record)
    record.outbox.discard(ids=_ids(record, delivered), audit=_who())
    unbuilt = _filed(record, "IPP-DISCARD-8")
    job = record.builds.claim_next()
    assert job is not None
    record.builds.mark_dead(job_id=job.id, code="output_build_failed", error="ValueError")
    record.builds.discard(ids=[job.id], audit=_who())

    def build_state() -> str:
        with record.sessions() as session:
            return str(
                session.scalar(select(output_builds.c.state).where(output_builds.c.result_id == unbuilt))
            )

    migrate(record, "0015")
    assert [state for _, state, _ in _rows(record, delivered)] == ["withheld", "withheld"]
    assert build_state() == "done"
    migrate(record, "head")
    again = _queued(record, "IPP-DISCARD-9")
    _kill_all(record)
    assert record.outbox.discard(ids=_ids(record, again), audit=_who()) == _ids(record, again)
    assert [state for _, state, _ in _rows(record, again)] == ["discarded", "discarded"]
