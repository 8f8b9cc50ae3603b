"""After a study result is filed: queue its DICOM outputs for every destination, and show their state.

One place for every channel (upload, STOW-RS, DIMSE): :func:`analyse_decoded` calls
:func:`queue_outputs` once the result is committed; the SR and heatmap captures are built from what the
record holds (the result, its display rendering and CAMs), so nothing runs the model again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from inference.record import deliveries
from inference.services._context import Context, db

if TYPE_CHECKING:
    from inference.dicom import Study

logger = logging.getLogger(__name__)


async def queue_outputs(
    ctx: Context,
    *,
    study: Study,
    result: dict[str, Any],
) -> bool:
    """Queue the SR and heatmap captures of a committed imaging result, then wake the outbox worker.

    Nothing is queued for a patient who objected to sharing (see
    :func:`inference.delivery.enqueue_result`). A failure is logged, not raised: the result is filed
    and answerable, and sending the study again queues its outputs (queueing is idempotent).

    Args:
        ctx: The process's engines (``ctx.outbox`` None or without destinations: nothing to do).
        study: The decoded study the result was made from (its header goes into the objects).
        result: The committed result as the record returns it.

    Returns:
        False when the outputs could not be queued.
    """
    from inference.delivery import enqueue_result

    outbox = ctx.outbox
    if outbox is None or not outbox.destinations:
        return True
    try:
        added = await enqueue_result(
            record=ctx.record,
            destinations=outbox.destinations,
            org_root=ctx.settings.org_root,
            study=study,
            result=result,
        )
    except Exception as e:  # the result is committed; a writer or database failure must not lose it
        logger.error(
            "the outputs of a filed result could not be queued for delivery (%s)",
            type(e).__name__,
            exc_info=True,
            extra={"event": "delivery_not_queued", "result_id": str(result["result_id"])},
        )
        return False
    if added:
        outbox.wake()
    return True


async def with_deliveries(ctx: Context, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``deliveries``: the state of each object queued for a destination (imaging only)."""
    if result.get("kind") != "imaging":
        return result  # triage results are never delivered
    rows = await db(deliveries, ctx.record, result_id=str(result["result_id"]))
    return {**result, "deliveries": rows}
