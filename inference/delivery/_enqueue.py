"""Queue a committed imaging result for every destination: build its DICOM objects once, enqueue them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from inference.delivery._outputs import build_objects

if TYPE_CHECKING:
    from inference.config import Destination
    from inference.dicom import Study
    from inference.record import AnyResult, Record

logger = logging.getLogger(__name__)


async def enqueue_result(
    *,
    record: Record,
    destinations: Sequence[Destination],
    org_root: str,
    study: Study,
    result: AnyResult,
    synthetic: bool | None = None,
    build_id: int | None = None,
) -> int:
    """Put the SR and heatmap captures of a committed result in the outbox of every destination.

    Nothing is built or queued for a patient who objected to sharing their data (every destination is
    outside the record). Idempotent: a result already queued for every destination is not built again,
    and the outbox's UNIQUE constraint keeps one row per object and destination whatever happens.

    The SR names, as the report it supersedes, the latest earlier SR of the study that each destination
    received: destinations whose histories differ (one was down when the study was first analysed) get
    their own SR, with the same findings and series but its own Predecessor Documents Sequence (and so
    its own SOP Instance UID), so no archive is pointed at a report it never received.

    Args:
        record: The patient record (the result and its display rendering are committed there already).
        destinations: Where results go.
        org_root: Organisation root of the new UIDs.
        study: The decoded study the result was made from.
        result: The committed result, as the record returns it.
        synthetic: Whether its model was trained on synthetic data (its ``model.synthetic`` when None).
        build_id: The output build this is (marked done in the transaction that queues the objects).

    Returns:
        How many outbox rows were added.
    """
    from inference.record import ImagingResult

    if not destinations or not isinstance(result, ImagingResult):
        return 0
    result_id = result.result_id
    patient_id = result.patient.id
    if not await asyncio.to_thread(record.consent.sharing_allowed, patient_id=patient_id):
        logger.info(
            "result not queued: the patient objected to sharing",
            extra={"event": "delivery_skipped", "result_id": result_id, "code": "consent_objection"},
        )
        return 0
    queued = {
        row.destination for row in await asyncio.to_thread(record.outbox.deliveries, result_id=result_id)
    }
    names = [d.name for d in destinations if d.name not in queued]
    if not names:
        return 0
    earlier = await asyncio.to_thread(record.outbox.earlier_results, result_id=result_id)
    by_prior: dict[bytes | None, list[str]] = {}
    for name in names:
        prior = await asyncio.to_thread(record.outbox.prior_report, result_id=result_id, destination=name)
        by_prior.setdefault(prior, []).append(name)
    added = 0
    groups = list(by_prior.items())
    for number, (prior, group) in enumerate(groups, start=1):
        objects = await build_objects(
            record=record,
            study=study,
            result=result,
            org_root=org_root,
            synthetic=synthetic,
            prior=prior,
            earlier=earlier,
        )
        # The build is done once every destination is queued: after a crash between two groups, it is
        # built again for the destinations not queued yet.
        rows = await asyncio.to_thread(
            record.outbox.enqueue,
            result_id=result_id,
            destinations=group,
            objects=objects,
            build_id=build_id if number == len(groups) else None,
        )
        logger.info(
            "result queued for delivery",
            extra={"event": "delivery_queued", "result_id": result_id, "objects": len(objects), "rows": rows},
        )
        added += rows
    return added
