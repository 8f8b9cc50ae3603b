"""A PACS down when results are ready gets every one of them once it is back: none lost, none twice."""

from __future__ import annotations

from typing import Any

import pytest
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, Pacs, storescu, wait_until
from sqlalchemy import select

from inference.record import Record, _outbox

pytestmark = pytest.mark.integration


def _results(pacs: Pacs, study_uids: list[str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]] | None:
    record = Record(pacs.listener.record_url)
    try:
        out = []
        for uid in study_uids:
            result = record.results.latest_for_study(study_instance_uid=uid)
            if result is None:
                return None
            out.append((result, record.outbox.deliveries(result_id=result.result_id)))
        return out
    finally:
        record.close()


def _queue_order(pacs: Pacs) -> list[tuple[int, Any, str, int, str | None]]:
    """``(id, sent_at, state, attempts, last_error)`` of every outbox row, in queue order."""
    record = Record(pacs.listener.record_url)
    try:
        with record.sessions() as session:
            table = _outbox.outbox
            rows = session.execute(
                select(
                    table.c.id, table.c.sent_at, table.c.state, table.c.attempts, table.c.last_error
                ).order_by(table.c.id)
            )
            return [(row.id, row.sent_at, row.state, row.attempts, row.last_error) for row in rows]
    finally:
        record.close()


def test_results_survive_a_pacs_outage_and_arrive_exactly_once(pacs: Pacs) -> None:
    pacs.orthanc.stop()
    studies = [new_uid(), new_uid()]
    try:
        files = [
            write(pacs.work / "outage" / f"{i}.dcm", chest_cr(study=uid, view="PA", blob=True, seed=10 + i))
            for i, uid in enumerate(studies)
        ]
        # The modality sends straight to dxassist while the PACS is down.
        storescu(files, port=pacs.listener.port, called=LISTENER_AET)

        def retried() -> Any:
            found = _results(pacs, studies)
            if found is None:
                return None
            if not all(deliveries for _result, deliveries in found):
                return None
            rows = [row for row in _queue_order(pacs) if row[2] == "pending"]
            # Only the head of the queue is tried: later objects never overtake it.
            return rows if rows and rows[0][3] >= 2 else None

        rows = wait_until(
            retried, timeout=60, interval=0.3, what="failed delivery attempts while Orthanc is down"
        )
        assert "No association" in (rows[0][4] or "")
        assert all(attempts == 0 for *_head, attempts, _error in rows[1:])
    finally:
        pacs.orthanc.start()  # same storage, same ports

    def all_sent() -> Any:
        found = _results(pacs, studies)
        rows = [d for _result, deliveries in found or [] for d in deliveries]
        return found if rows and all(d.state == "sent" for d in rows) else None

    after = wait_until(all_sent, timeout=60, interval=0.3, what="every delivery after Orthanc is back")

    for uid, (result, deliveries) in zip(studies, after, strict=True):
        positives = sum(1 for f in result.findings if f.positive)
        study_id = pacs.orthanc.study_id(uid)
        assert study_id is not None
        instances = pacs.orthanc.get(f"/studies/{study_id}/instances")
        # Exactly once: one SR and one capture per positive finding, nothing twice.
        assert len(instances) == 1 + positives == len(deliveries)
        sop_uids = [
            pacs.orthanc.get(f"/instances/{i['ID']}")["MainDicomTags"]["SOPInstanceUID"] for i in instances
        ]
        assert sorted(sop_uids) == sorted(d.object for d in deliveries)

    # In order: the outbox was delivered in the order it was filled.
    sent_times = [sent_at for _id, sent_at, state, *_rest in _queue_order(pacs) if state == "sent"]
    assert sent_times == sorted(sent_times)
