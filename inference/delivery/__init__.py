"""Delivery of results back to the PACS: DICOM objects queued in the outbox, sent by a retrying worker.

A committed imaging result becomes a TID 1500 SR and heatmap secondary captures (:mod:`inference.writers`);
:func:`enqueue_result` queues them for every configured destination in the record's outbox, and
:class:`OutboxWorker` sends them by C-STORE or STOW-RS, in order per destination, with exponential backoff.
Metrics: ``dxassist_deliveries_total{destination,state}`` and ``dxassist_outbox_pending``.
"""

from inference.config import Destination
from inference.delivery._enqueue import enqueue_result
from inference.delivery._outputs import build_objects
from inference.delivery._senders import DeliveryFailed, send
from inference.delivery._worker import DELIVERIES, OUTBOX_PENDING, OutboxWorker, backoff

__all__ = [
    "DELIVERIES",
    "OUTBOX_PENDING",
    "DeliveryFailed",
    "Destination",
    "OutboxWorker",
    "backoff",
    "build_objects",
    "enqueue_result",
    "send",
]
