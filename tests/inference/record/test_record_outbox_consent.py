"""An objection stops the deliveries already queued: the outbox re-reads the consent when it hands out an
object, so nothing queued (or retried) before the patient objected reaches a destination."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _record_data import imaging, migrate, patient

from inference.record import OutputsIn, Record
from inference.record._outbox import DELIVERY_ACTION, Claim, OutboxObject

SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _queued(record: Record, identifier: str) -> tuple[str, str]:
    """A filed result of a new patient with one object queued for ``pacs``: (result id, patient id)."""
    data = replace(imaging(pat=patient(identifier)), outputs=OutputsIn(destinations=("pacs",), spool="s"))
    stored = record.results.save_imaging(data=data)
    job = record.builds.claim_next()
    assert job is not None
    record.outbox.enqueue(
        result_id=stored.result_id,
        destinations=["pacs"],
        objects=[OutboxObject("sr", f"1.2.3.{identifier[-1]}", SR, b"sr")],
        build_id=job.id,
    )
    return stored.result_id, stored.result.patient.id


@pytest.mark.parametrize("objection", ["national_sharing", "ai_processing"])
def test_an_object_queued_before_the_objection_is_cancelled_not_sent(record: Record, objection: str) -> None:
    withdrawn, patient_id = _queued(record, "IPP-OBJ-1")
    kept, _ = _queued(record, "IPP-OBJ-2")
    choices = {"ai_processing": True, "national_sharing": True, objection: False}
    record.consent.set(patient_id=patient_id, by="dr-who", role="clinician", **choices)

    # The objecting patient's object was first in line; the worker gets the next patient's instead, and
    # learns that one object was withheld on the way (what it counts in /metrics).
    claim = record.outbox.claim(destination="pacs")
    item = claim.item
    assert item is not None and item.result_id == kept
    assert claim.withheld == 1
    (delivery,) = record.outbox.deliveries(result_id=withdrawn)
    assert (delivery.state, delivery.error) == ("withheld", "consent_withdrawn")
    _total, entries = record.audit.search(patient_id=patient_id)
    (audited,) = [e for e in entries if e["action"] == DELIVERY_ACTION]
    assert (audited["outcome"], audited["resource_id"]) == ("failure", "pacs")

    # Not a dead letter: an operator's list and count of them stay clean, and retrying every dead letter
    # does not hand it back.
    assert record.outbox.dead() == [] and record.outbox.count_dead() == 0
    record.outbox.mark_sent(item_id=item.id)
    assert record.outbox.requeue() == []
    assert record.outbox.claim(destination="pacs") == Claim(item=None, withheld=0)  # counted once only
    (delivery,) = record.outbox.deliveries(result_id=withdrawn)
    assert (delivery.state, delivery.error) == ("withheld", "consent_withdrawn")


def test_a_dead_letter_retried_after_the_objection_is_withheld_not_sent(record: Record) -> None:
    result_id, patient_id = _queued(record, "IPP-OBJ-3")
    item = record.outbox.claim_next(destination="pacs")
    assert item is not None and item.result_id == result_id
    record.outbox.mark_dead(item_id=item.id, error="rejected by the PACS", code="destination_refused")
    record.consent.set(
        patient_id=patient_id, by="dr-who", role="clinician", ai_processing=True, national_sharing=False
    )
    assert record.outbox.count_dead() == 1
    assert record.outbox.requeue() != []  # the operator retries it
    # The objection stands: not handed out, withheld (and reported so) instead.
    assert record.outbox.claim(destination="pacs") == Claim(item=None, withheld=1)
    (delivery,) = record.outbox.deliveries(result_id=result_id)
    assert (delivery.state, delivery.error) == ("withheld", "consent_withdrawn")
    assert record.outbox.count_dead() == 0


def test_migration_0013_moves_cancelled_deliveries_out_of_the_dead_letters_and_back(record: Record) -> None:
    """Databases of earlier versions kept cancelled deliveries as dead letters: upgrading makes them
    withheld, downgrading makes them dead again (the CHECK of each revision holds)."""
    from sqlalchemy import text

    withdrawn, patient_id = _queued(record, "IPP-OBJ-4")
    record.consent.set(
        patient_id=patient_id, by="dr-who", role="clinician", ai_processing=True, national_sharing=False
    )
    assert record.outbox.claim_next(destination="pacs") is None

    def states() -> list[tuple[str, str]]:
        with record.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT state, error_code FROM outbox WHERE result_id = :r"), {"r": withdrawn}
            )
            return [(row[0], row[1]) for row in rows]

    migrate(record, "0012")
    assert states() == [("dead", "consent_withdrawn")]
    migrate(record, "head")
    assert states() == [("withheld", "consent_withdrawn")]
    assert record.outbox.count_dead() == 0
