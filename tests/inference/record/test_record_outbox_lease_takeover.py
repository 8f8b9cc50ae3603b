"""A delivery lease deliberately orphaned: an outbox worker killed (SIGKILL) holding it, another takes over.

Two real processes on one record (SQLite file and PostgreSQL) and a real STOW-RS receiver (Orthanc with
its DICOMweb plugin). Worker A claims the oldest object and is killed either before sending it or after
sending it but before marking it sent. While A's lease lasts, no worker may take that object, nor any
later object of the destination (order is kept). Worker B, another process, then delivers everything
once the lease has ended. Orthanc ends up with each object exactly once: an object A had already sent is
sent again by B with the same SOP Instance UID, which a PACS stores once (idempotent by UID).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from _record_data import imaging, patient
from sqlalchemy import select

from inference.config import Destination
from inference.record import Record
from inference.record._outbox import OutboxObject, outbox

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pacs"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from _api_dicom import chest_dicom  # noqa: E402
from _pacs_harness import PASSWORD, USER, Orthanc, free_port, require_tools, wait_until  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHILD = Path(__file__).with_name("_outbox_child.py")
REPO = Path(__file__).resolve().parents[3]
LEASE_SECONDS = 6.0
OBJECTS = 3


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    require_tools()
    root = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(root, free_port(), free_port(), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _child(url: str, destination: Destination, mode: str, marker: Path) -> list[str]:
    # The password in clear for the child (a dump masks secrets); on its command line only in this test.
    described = json.dumps({**destination.model_dump(mode="json"), "password": PASSWORD})
    return [sys.executable, str(CHILD), url, described, str(LEASE_SECONDS), mode, str(marker)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXASSIST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _stored(orthanc: Orthanc, study: str) -> list[str]:
    """SOP Instance UIDs of the study as Orthanc holds it (one entry per stored instance)."""
    with orthanc.client() as client:
        response = client.get(f"/dicom-web/studies/{study}/instances")
    if response.status_code != 200 or not response.content.strip():
        return []
    return [str(item["00080018"]["Value"][0]) for item in response.json()]


@pytest.mark.parametrize("mode", ["stall-before-send", "stall-after-send"])
def test_killed_worker_lease_is_taken_over_and_each_object_stored_once(
    record_url: str, orthanc: Orthanc, mode: str, tmp_path: Path
) -> None:
    record = Record(record_url)
    record.migrate()
    study = f"2.25.{uuid.uuid4().int}"
    sops = [f"{study}.{i}" for i in range(1, OBJECTS + 1)]
    objects = []
    for i, sop in enumerate(sops):
        payload = chest_dicom(study=study, sop=sop, size=32, seed=i)
        sop_class = str(pydicom.dcmread(BytesIO(payload), stop_before_pixels=True).SOPClassUID)
        objects.append(OutboxObject(kind="sc", object_uid=sop, sop_class_uid=sop_class, payload=payload))
    filed = record.results.save_imaging(data=imaging(pat=patient(f"IPP-LEASE-{uuid.uuid4().hex[:8]}")))
    record.outbox.enqueue(result_id=filed.result_id, destinations=["pacs"], objects=objects)
    destination = Destination(
        name="pacs",
        kind="stowrs",
        url=f"{orthanc.url}/dicom-web",
        username=USER,
        password=PASSWORD,
        timeout_seconds=LEASE_SECONDS - 1,
    )

    stalled = tmp_path / "stalled"
    worker_a = subprocess.Popen(_child(record_url, destination, mode, stalled), env=_env())
    try:
        wait_until(
            lambda: (stalled.exists() and stalled.read_text()) or worker_a.poll() is not None,
            timeout=120,
            what="worker A holding the first object",
        )
        assert worker_a.poll() is None, "worker A ended instead of stalling"
        worker_a.send_signal(signal.SIGKILL)
    finally:
        worker_a.kill()
        worker_a.wait(timeout=30)
    assert stalled.read_text() == sops[0]  # the oldest object first

    with record.engine.connect() as connection:
        rows = connection.execute(select(outbox).order_by(outbox.c.id)).all()
    first = rows[0]
    assert (first.state, first.attempts) == ("pending", 0) and first.lease_until is not None
    assert all(row.lease_until is None for row in rows[1:])
    # While the dead worker's lease lasts nobody takes the object, nor a later one (order is kept).
    assert (
        record.outbox.claim_next(destination="pacs", now=first.lease_until - timedelta(milliseconds=1))
        is None
    )
    assert _stored(orthanc, study) == (sops[:1] if mode == "stall-after-send" else [])

    sent_by_b = tmp_path / "sent-by-b"
    worker_b = subprocess.run(
        _child(record_url, destination, "deliver", sent_by_b), env=_env(), timeout=200, check=False
    )
    assert worker_b.returncode == 0
    # B sent every object once, in order, the orphaned one included (again, when A had sent it).
    assert sent_by_b.read_text().split() == sops
    assert sorted(_stored(orthanc, study)) == sorted(sops)  # each object stored exactly once
    with record.engine.connect() as connection:
        states = connection.execute(select(outbox.c.state, outbox.c.attempts).order_by(outbox.c.id)).all()
    assert [tuple(row) for row in states] == [("sent", 1)] * OBJECTS
    record.close()
