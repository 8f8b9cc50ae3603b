"""The outbox keeps an object's bytes only while they may be sent: a capture drops them once the
destination has it, a withheld object at once; a sent SR keeps them (the next SR of the study names it)
and a dead letter keeps them for the operator's retry. Without this, a study with five positive
findings left about 15 MB in the record per destination, for ever."""

from __future__ import annotations

from dataclasses import replace

from _record_data import imaging, migrate, patient, uid
from sqlalchemy import func, select, text

from inference.record import OutputsIn, Record
from inference.record._outbox import OutboxObject, outbox

SR = "1.2.840.10008.5.1.4.1.1.88.33"
SC = "1.2.840.10008.5.1.4.1.1.7"
CAPTURE = bytes(range(256)) * 12_000  # 3 MB: a 1024 x 1024 RGB capture's order of size
REPORT = b"DICM-sr" * 500


def _queued(record: Record, identifier: str, study_uid: str | None = None) -> str:
    """A filed result with an SR and two captures queued for ``pacs`` and ``vna``: its id."""
    data = replace(
        imaging(pat=patient(identifier), study_uid=study_uid),
        outputs=OutputsIn(destinations=("pacs", "vna"), spool="s"),
    )
    stored = record.results.save_imaging(data=data)
    job = record.builds.claim_next()
    assert job is not None and job.result_id == stored.result_id
    objects = [
        OutboxObject("sr", uid(), SR, REPORT),
        OutboxObject("sc", uid(), SC, CAPTURE),
        OutboxObject("sc", uid(), SC, CAPTURE),
    ]
    record.outbox.enqueue(
        result_id=stored.result_id, destinations=["pacs", "vna"], objects=objects, build_id=job.id
    )
    return stored.result_id


def _held(record: Record, result_id: str) -> dict[tuple[str, str, str], int]:
    """Bytes each row of ``result_id`` holds: ``{(destination, kind, state): bytes, summed}``."""
    query = (
        select(outbox.c.destination, outbox.c.kind, outbox.c.state, func.length(outbox.c.payload))
        .where(outbox.c.result_id == result_id)
        .order_by(outbox.c.id)
    )
    held: dict[tuple[str, str, str], int] = {}
    with record.sessions() as session:
        for destination, kind, state, size in session.execute(query):
            held[(destination, kind, state)] = held.get((destination, kind, state), 0) + int(size)
    return held


def _send_all(record: Record, destination: str) -> None:
    while (item := record.outbox.claim_next(destination=destination)) is not None:
        record.outbox.mark_sent(item_id=item.id)


def test_a_sent_capture_drops_its_bytes_a_sent_sr_keeps_them(record: Record) -> None:
    study = uid()
    first = _queued(record, "IPP-BYTES-1", study_uid=study)
    _send_all(record, "pacs")
    assert _held(record, first) == {
        ("pacs", "sr", "sent"): len(REPORT),
        ("pacs", "sc", "sent"): 0,
        # Not sent yet to the other destination: its copies are intact.
        ("vna", "sr", "pending"): len(REPORT),
        ("vna", "sc", "pending"): 2 * len(CAPTURE),
    }
    # What the destination receives is untouched by what the other's delivery dropped.
    item = record.outbox.claim_next(destination="vna")
    assert item is not None and item.payload == REPORT
    record.outbox.mark_sent(item_id=item.id)
    item = record.outbox.claim_next(destination="vna")
    assert item is not None and item.payload == CAPTURE
    # The study analysed again: its SR still names the report the PACS received.
    again = _queued(record, "IPP-BYTES-1", study_uid=study)
    assert record.outbox.prior_report(result_id=again, destination="pacs") == REPORT


def test_a_dead_letter_keeps_its_bytes_for_the_retry_a_withheld_object_keeps_none(record: Record) -> None:
    result_id = _queued(record, "IPP-BYTES-2")
    item = record.outbox.claim_next(destination="pacs")
    assert item is not None
    record.outbox.mark_dead(item_id=item.id, error="refused by the PACS", code="destination_refused")
    assert _held(record, result_id)[("pacs", "sr", "dead")] == len(REPORT)
    assert record.outbox.requeue() != []
    item = record.outbox.claim_next(destination="pacs")
    assert item is not None and item.payload == REPORT  # the retry sends the same bytes
    record.outbox.mark_sent(item_id=item.id)

    patient_id = record.results.get(result_id=result_id).patient.id
    record.consent.set(
        patient_id=patient_id, by="dr-who", role="clinician", ai_processing=True, national_sharing=False
    )
    assert record.outbox.claim_next(destination="vna") is None  # every vna row is withheld
    assert record.outbox.claim_next(destination="pacs") is None
    held = _held(record, result_id)
    assert held[("vna", "sr", "withheld")] == 0 and held[("vna", "sc", "withheld")] == 0
    assert held[("pacs", "sc", "withheld")] == 0 and held[("pacs", "sr", "sent")] == len(REPORT)


def test_migration_0015_drops_the_bytes_already_kept(record: Record) -> None:
    """Rows sent or withheld by earlier versions held their bytes: the upgrade drops them."""

    result_id = _queued(record, "IPP-BYTES-3")

    migrate(record, "0014")
    with record.engine.begin() as connection:  # what an earlier version left: sent with every byte
        connection.execute(
            text("UPDATE outbox SET state = 'sent' WHERE result_id = :r AND destination = 'pacs'"),
            {"r": result_id},
        )
        connection.execute(
            text("UPDATE outbox SET state = 'withheld' WHERE result_id = :r AND destination = 'vna'"),
            {"r": result_id},
        )
    assert _held(record, result_id)[("pacs", "sc", "sent")] == 2 * len(CAPTURE)
    migrate(record, "head")
    assert _held(record, result_id) == {
        ("pacs", "sr", "sent"): len(REPORT),
        ("pacs", "sc", "sent"): 0,
        ("vna", "sr", "withheld"): 0,
        ("vna", "sc", "withheld"): 0,
    }
