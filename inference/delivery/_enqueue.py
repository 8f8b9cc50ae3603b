"""Queue a committed imaging result for every destination: build its DICOM objects once, enqueue them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.delivery._outputs import build_objects
from inference.record import _outbox

if TYPE_CHECKING:
    from inference.delivery._config import Destination
    from inference.dicom import Study
    from inference.preprocess import Geometry
    from inference.record import Record
    from inference.runtime import ModelHost

logger = logging.getLogger(__name__)


async def enqueue_result(
    *,
    record: Record,
    host: ModelHost | None,
    destinations: Sequence[Destination],
    org_root: str,
    study: Study,
    result: dict[str, Any],
    cams: Mapping[str, np.ndarray] | None = None,
    geometry: Geometry | None = None,
) -> int:
    """Put the SR and heatmap captures of a committed result in the outbox of every destination.

    Nothing is built or queued for a patient who objected to sharing their data (every destination is
    outside the record). Idempotent: a result already queued for every destination is not built again,
    and the outbox's UNIQUE constraint keeps one row per object and destination whatever happens.

    Args:
        record: The patient record (the result is committed there already).
        host: The model host (recomputes the heat maps of the captures when ``cams`` is None).
        destinations: Where results go.
        org_root: Organisation root of the new UIDs.
        study: The decoded study the result was made from.
        result: The public JSON of the committed result.
        cams: The class activation maps of the analysis that made ``result``, per finding code.
        geometry: Their letterbox geometry.

    Returns:
        How many outbox rows were added.
    """
    if not destinations or result.get("kind") != "imaging":
        return 0
    result_id = str(result["result_id"])
    patient_id = str(result["patient"]["id"])
    if not await asyncio.to_thread(record.sharing_allowed, patient_id=patient_id):
        logger.info(
            "result not queued: the patient objected to sharing",
            extra={"event": "delivery_skipped", "result_id": result_id, "code": "consent_objection"},
        )
        return 0
    queued = {
        row["destination"] for row in await asyncio.to_thread(_outbox.deliveries, record, result_id=result_id)
    }
    names = [d.name for d in destinations if d.name not in queued]
    if not names:
        return 0
    objects = await build_objects(
        host=host, study=study, result=result, org_root=org_root, cams=cams, geometry=geometry
    )
    added = await asyncio.to_thread(
        _outbox.enqueue, record, result_id=result_id, destinations=names, objects=objects
    )
    logger.info(
        "result queued for delivery",
        extra={"event": "delivery_queued", "result_id": result_id, "objects": len(objects), "rows": added},
    )
    return added
