"""A new imaging result is filed together with the pending build of its DICOM outputs (one transaction),
due at once for the outbox worker of any process: nothing is built on the request path.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from _record_data import imaging, patient
from sqlalchemy import select

from inference.record import Delivery, ImagingResult, OutputsIn, PendingBuild, Record, RecordError
from inference.record._builds import output_builds
from inference.record._outbox import OutboxObject
from inference.record._types import utcnow


def _rows(record: Record, **where: str) -> list[dict[str, Any]]:
    query = select(output_builds)
    for name, value in where.items():
        query = query.where(output_builds.c[name] == value)
    with record.sessions() as session:
        return [dict(row._mapping) for row in session.execute(query)]


def test_the_build_is_committed_with_the_result_and_due_for_any_worker(record: Record) -> None:
    outputs = OutputsIn(destinations=("pacs", "vna"), spool="spool/builds/filing-1")
    data = replace(imaging(pat=patient("IPP-OUT-1")), outputs=outputs)
    stored = record.results.save_imaging(data=data)
    (row,) = _rows(record, result_id=stored.result_id)
    assert (row["state"], row["attempts"], row["destinations"]) == ("pending", 0, "pacs,vna")
    assert row["spool"] == "spool/builds/filing-1" and row["lease_until"] is None
    # What the filing answers with: one "outputs" entry per destination, pending, no attempt yet.
    filed = stored.result
    assert isinstance(filed, ImagingResult)
    assert filed.build == PendingBuild(("pacs", "vna"), "pending", 0, None, None)
    assert [(d.destination, d.kind, d.state, d.attempts) for d in filed.deliveries] == [
        ("pacs", "outputs", "pending", 0),
        ("vna", "outputs", "pending", 0),
    ]
    # Due now for a worker; claimed, no other worker takes it until its lease ends.
    job = record.builds.claim_next()
    assert job is not None and job.result_id == stored.result_id
    assert job.destinations == ("pacs", "vna") and job.spool == "spool/builds/filing-1"
    assert record.builds.claim_next() is None
    assert record.builds.claim_next(now=utcnow() + timedelta(seconds=301)) is not None

    # A resend files no second build.
    again = record.results.save_imaging(data=data)
    assert not again.created and len(_rows(record, result_id=stored.result_id)) == 1

    # Built by the worker: the outbox rows replace the "outputs" entries, the build is done, by the
    # transaction that queued them (the worker's mark_done after it changes nothing).
    record.outbox.enqueue(
        result_id=stored.result_id,
        destinations=["pacs", "vna"],
        objects=[OutboxObject("sr", "1.2.3.4", "1.2.840.10008.5.1.4.1.1.88.34", b"sr")],
        build_id=job.id,
    )
    assert record.builds.for_result(result_id=stored.result_id) is None
    record.builds.mark_done(job_id=job.id)
    (row,) = _rows(record, result_id=stored.result_id)
    assert (row["state"], row["attempts"], row["spool"], row["lease_until"]) == ("done", 1, None, None)
    read = record.results.get(result_id=stored.result_id, deliveries=True)
    assert isinstance(read, ImagingResult) and read.build is None
    assert read.deliveries == (
        Delivery("pacs", "sr", "1.2.3.4", "pending", 0, None, None, None),
        Delivery("vna", "sr", "1.2.3.4", "pending", 0, None, None, None),
    )
    # Without deliveries asked for, none is read.
    plain = record.results.get(result_id=stored.result_id)
    assert isinstance(plain, ImagingResult) and plain.deliveries == () and plain.build is None


def test_outputs_queued_and_their_build_done_are_one_transaction(
    record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two commits left a window: outputs queued, the build still pending and leased (a crash there left
    # it to be built again once the lease ended; with a spool of the old kind, removed in between, the
    # rebuild failed into a dead letter although the outputs were queued). Now nothing is queued unless
    # the build is marked done with it.
    from inference.record import _builds

    outputs = OutputsIn(destinations=("pacs",), spool=None)
    stored = record.results.save_imaging(data=replace(imaging(pat=patient("IPP-OUT-4")), outputs=outputs))
    job = record.builds.claim_next()
    assert job is not None and job.result_id == stored.result_id
    sr = OutboxObject("sr", "1.2.3.5", "1.2.840.10008.5.1.4.1.1.88.34", b"sr")

    def crash(session: Any, *, job_id: int) -> None:
        raise RuntimeError("the process died before the build was marked")

    monkeypatch.setattr(_builds, "mark_done_in", crash)
    with pytest.raises(RuntimeError):
        record.outbox.enqueue(
            result_id=stored.result_id, destinations=["pacs"], objects=[sr], build_id=job.id
        )
    assert record.outbox.deliveries(result_id=stored.result_id) == ()
    assert _rows(record, result_id=stored.result_id)[0]["state"] == "pending"
    monkeypatch.undo()
    assert (
        record.outbox.enqueue(
            result_id=stored.result_id, destinations=["pacs"], objects=[sr], build_id=job.id
        )
        == 1
    )
    assert [d.state for d in record.outbox.deliveries(result_id=stored.result_id)] == ["pending"]
    assert _rows(record, result_id=stored.result_id)[0]["state"] == "done"


def test_a_result_that_fails_to_file_leaves_no_build(record: Record) -> None:
    outputs = OutputsIn(destinations=("pacs",), spool="spool/builds/filing-atomic")
    data = replace(imaging(pat=patient("IPP-OUT-2"), heatmap=b"GIF89a not a png"), outputs=outputs)
    with pytest.raises(RecordError, match="nothing was saved"):
        record.results.save_imaging(data=data)
    assert _rows(record, spool="spool/builds/filing-atomic") == []


def test_a_failed_build_is_shown_on_the_result(record: Record) -> None:
    outputs = OutputsIn(destinations=("pacs",), spool="spool/builds/filing-2")
    stored = record.results.save_imaging(data=replace(imaging(pat=patient("IPP-OUT-3")), outputs=outputs))
    job = record.builds.claim_next()
    assert job is not None
    record.builds.mark_dead(
        job_id=job.id, code="invalid_header", error="Building the outputs failed (ValueError)."
    )
    read = record.results.get(result_id=stored.result_id, deliveries=True)
    assert isinstance(read, ImagingResult)
    assert read.build is not None and (read.build.state, read.build.attempts) == ("dead", 1)
    (entry,) = read.deliveries
    assert (entry.kind, entry.state, entry.error) == ("outputs", "dead", "invalid_header")


def test_a_new_analysis_never_lowers_the_priority_of_its_study(record: Record) -> None:
    first = record.results.save_imaging(data=imaging(pat=patient("IPP-PRI"), priority="critical"))
    study = first.result.study_instance_uid  # type: ignore[union-attr]
    later = imaging(pat=patient("IPP-PRI"), study_uid=study, priority="routine")
    kept = record.results.save_imaging(data=replace(later, keep_study_priority=True))
    assert kept.created and kept.result is not None and kept.result.priority == "critical"
    plain = record.results.save_imaging(
        data=replace(imaging(pat=patient("IPP-PRI"), study_uid=study), priority="routine")
    )
    assert plain.result is not None and plain.result.priority == "routine"
