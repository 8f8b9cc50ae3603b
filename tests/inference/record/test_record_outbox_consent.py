"""An objection stops the deliveries already queued: the outbox re-reads the consent when it hands out an
object, so nothing queued (or retried) before the patient objected reaches a destination."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _record_data import imaging, patient

from inference.record import OutputsIn, Record
from inference.record._outbox import DELIVERY_ACTION, OutboxObject

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

    # The objecting patient's object was first in line; the worker gets the next patient's instead.
    item = record.outbox.claim_next(destination="pacs")
    assert item is not None and item.result_id == kept
    (delivery,) = record.outbox.deliveries(result_id=withdrawn)
    assert (delivery.state, delivery.error) == ("dead", "consent_withdrawn")
    _total, entries = record.audit.search(patient_id=patient_id)
    (audited,) = [e for e in entries if e["action"] == DELIVERY_ACTION]
    assert (audited["outcome"], audited["resource_id"]) == ("failure", "pacs")

    # An operator's retry of the dead letters does not send it either while the objection stands.
    record.outbox.mark_sent(item_id=item.id)
    assert record.outbox.requeue() != []
    assert record.outbox.claim_next(destination="pacs") is None
    (delivery,) = record.outbox.deliveries(result_id=withdrawn)
    assert (delivery.state, delivery.error) == ("dead", "consent_withdrawn")
