"""An outbox worker in a process of its own, for the lease take-over test.

``python _outbox_child.py DATABASE_URL DESTINATION_JSON LEASE_SECONDS MODE MARKER``

- ``MODE=stall-before-send``: claims the first object, writes MARKER, and hangs before sending (the test
  kills it with SIGKILL: a worker that died holding a lease, nothing sent).
- ``MODE=stall-after-send``: claims the first object, sends it for real, writes MARKER, and hangs before
  marking it sent (killed: the destination has the object, the outbox still says pending).
- ``MODE=deliver``: passes over the outbox until nothing is pending (the lease of a dead worker ends on
  the database's clock), appending the SOP Instance UID of every object it sends to MARKER.
"""

from __future__ import annotations

import sys
import threading
import time
from io import BytesIO
from pathlib import Path

import pydicom

from inference.config import Destination
from inference.delivery import OutboxWorker
from inference.delivery._senders import send as real_send
from inference.record import Record


def main() -> None:
    url, destination_json, lease, mode, marker = sys.argv[1:6]
    destination = Destination.model_validate_json(destination_json)
    record = Record(url)
    hang = threading.Event()

    def send(dest: Destination, payload: bytes, sop_class_uid: str) -> None:
        uid = str(pydicom.dcmread(BytesIO(payload), stop_before_pixels=True).SOPInstanceUID)
        if mode == "stall-before-send":
            Path(marker).write_text(uid)
            hang.wait()  # killed here, holding the lease
        real_send(dest, payload, sop_class_uid)
        if mode == "stall-after-send":
            Path(marker).write_text(uid)
            hang.wait()  # killed here: sent, not marked sent
        with open(marker, "a", encoding="ascii") as log:
            log.write(uid + "\n")

    worker = OutboxWorker(record, [destination], lease_seconds=float(lease), poll_seconds=0.1, send=send)
    if mode != "deliver":
        worker.deliver_due()
        return
    deadline = time.monotonic() + 150
    while record.outbox.count_pending() and time.monotonic() < deadline:
        if not worker.deliver_due():
            time.sleep(0.1)  # the dead worker's lease has not ended yet
    record.close()


if __name__ == "__main__":
    main()
