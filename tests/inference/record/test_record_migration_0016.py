"""Migration 0016 on a record in use: deliveries and output builds queued before the upgrade, more after.

Revision 0016 rebuilds ``outbox`` and ``output_builds`` (Alembic's batch "move and copy"). On PostgreSQL the
copy is a new table with a new ``id`` sequence, which must carry on after the ids the copied rows hold:
a sequence starting again at 1 makes the next result's build row, and its deliveries, collide with the
rows of results filed before the upgrade.
"""

from __future__ import annotations

from dataclasses import replace

from _record_data import imaging, migrate, patient, uid
from sqlalchemy import select

from inference.record import OutputsIn, Record
from inference.record._builds import output_builds
from inference.record._outbox import OutboxObject, outbox

SR = "1.2.840.10008.5.1.4.1.1.88.33"
SC = "1.2.840.10008.5.1.4.1.1.7"


def _queued(record: Record, identifier: str) -> str:
    """A filed result whose SR and capture are queued for ``pacs``: its id."""
    data = replace(
        imaging(pat=patient(identifier)),
        outputs=OutputsIn(destinations=("pacs",), spool=None, source=b"the source header"),
    )
    result_id = record.results.save_imaging(data=data).result_id
    job = record.builds.claim_next()
    assert job is not None and job.result_id == result_id
    objects = [OutboxObject("sr", uid(), SR, b"DICM-sr"), OutboxObject("sc", uid(), SC, b"DICM-sc")]
    record.outbox.enqueue(result_id=result_id, destinations=["pacs"], objects=objects, build_id=job.id)
    return result_id


def test_results_filed_after_the_upgrade_queue_beside_those_filed_before(record: Record) -> None:
    # Filed with today's code (which needs today's schema), then taken down to 0015 with them: the rows
    # are there, with their ids, when 0016 rebuilds the tables.
    before = [_queued(record, f"IPP-0016-{n}") for n in range(6)]  # 6 builds, 12 deliveries
    migrate(record, "0015")
    migrate(record, "head")
    after = [_queued(record, f"IPP-0016-LATER-{n}") for n in range(3)]
    with record.sessions() as session:
        builds = dict(session.execute(select(output_builds.c.result_id, output_builds.c.state)).all())
        queued = session.execute(select(outbox.c.result_id, outbox.c.state)).all()
    assert builds == dict.fromkeys(before + after, "done")
    assert sorted(queued) == sorted(
        (result_id, "pending") for result_id in before + after for _ in ("sr", "sc")
    )
