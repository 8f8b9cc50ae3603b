"""A new imaging result is filed together with the pending build of its DICOM outputs (one transaction):
a crash after the commit leaves a row the outbox worker takes over once the filing process's lease ends.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from _record_data import imaging, patient
from sqlalchemy import select

from inference.record import OutputsIn, Record, RecordError
from inference.record._builds import output_builds
from inference.record._types import utcnow


def _rows(record: Record, **where: str) -> list[dict]:
    query = select(output_builds)
    for name, value in where.items():
        query = query.where(output_builds.c[name] == value)
    with record.sessions() as session:
        return [dict(row._mapping) for row in session.execute(query)]


def test_the_build_is_committed_with_the_result_and_left_to_the_filer_until_its_lease_ends(
    record: Record,
) -> None:
    outputs = OutputsIn(destinations=("pacs", "vna"), spool="spool/builds/filing-1", lease_seconds=60)
    data = replace(imaging(pat=patient("IPP-OUT-1")), outputs=outputs)
    stored = record.results.save_imaging(data=data)
    (row,) = _rows(record, result_id=stored.result_id)
    assert (row["state"], row["attempts"], row["destinations"]) == ("pending", 0, "pacs,vna")
    assert row["spool"] == "spool/builds/filing-1"
    # The filing process holds it: no worker takes it now, any worker does after the lease.
    assert record.builds.claim_next() is None
    job = record.builds.claim_next(now=utcnow() + timedelta(seconds=61))
    assert job is not None and job.result_id == stored.result_id
    assert job.destinations == ("pacs", "vna") and job.spool == "spool/builds/filing-1"

    # A resend files no second build; the result's own one is closed once by whoever built it.
    again = record.results.save_imaging(data=data)
    assert not again.created and len(_rows(record, result_id=stored.result_id)) == 1
    assert record.builds.settle_filed(result_id=stored.result_id) == "spool/builds/filing-1"
    assert record.builds.settle_filed(result_id=stored.result_id) is None
    assert _rows(record, result_id=stored.result_id)[0]["state"] == "done"
    assert record.builds.for_result(result_id=stored.result_id) is None


def test_a_result_that_fails_to_file_leaves_no_build(record: Record) -> None:
    outputs = OutputsIn(destinations=("pacs",), spool="spool/builds/filing-atomic", lease_seconds=60)
    data = replace(imaging(pat=patient("IPP-OUT-2"), heatmap=b"GIF89a not a png"), outputs=outputs)
    with pytest.raises(RecordError, match="nothing was saved"):
        record.results.save_imaging(data=data)
    assert _rows(record, spool="spool/builds/filing-atomic") == []


def test_a_failed_first_build_updates_the_filed_row(record: Record) -> None:
    outputs = OutputsIn(destinations=("pacs",), spool="spool/builds/filing-2", lease_seconds=60)
    stored = record.results.save_imaging(data=replace(imaging(pat=patient("IPP-OUT-3")), outputs=outputs))
    record.builds.add_failed(
        result_id=stored.result_id,
        destinations=["pacs"],
        code="invalid_header",
        error="Building the outputs failed (ValueError).",
        spool="spool/builds/filing-2",
        next_attempt_at=utcnow(),
    )
    (row,) = _rows(record, result_id=stored.result_id)
    assert (row["state"], row["attempts"], row["error_code"]) == ("pending", 1, "invalid_header")
    assert row["lease_until"] is None
    # No longer the filer's: settling it as built is refused, the worker's retries own it now.
    assert record.builds.settle_filed(result_id=stored.result_id) is None
    assert record.builds.claim_next() is not None
