"""What a PACS that stores only some SOP classes gets from dxassist (dcmtk ``storescp`` with a profile).

A PACS that stores Comprehensive SR but not Comprehensive 3D SR receives the report: the SR is a
Comprehensive SR, as its content (2D image coordinates) allows. A PACS that stores no SR at all answers
the association with every context rejected: that refusal is permanent, so the SR goes to the dead-letter
queue at its first attempt with a reason naming the SOP class, and the heatmaps behind it in that
destination's queue are delivered instead of waiting hours behind retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, Listener, free_port, storescu, wait_until
from _storescp import COMPREHENSIVE_SR, SECONDARY_CAPTURE, storescp

from inference.config import Destination
from inference.delivery import DeliveryFailed, send
from inference.record import Record

pytestmark = pytest.mark.integration

COMPREHENSIVE_SR_UID = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE_UID = "1.2.840.10008.5.1.4.1.1.7"


def _settled(listener: Listener, study: str) -> tuple[Any, list[Any]] | None:
    """The study's result and its deliveries once none is pending any more (each sent or dead)."""
    record = Record(listener.record_url)
    try:
        result = record.results.latest_for_study(study_instance_uid=study)
        if result is None:
            return None
        deliveries = list(record.outbox.deliveries(result_id=result.result_id))
    finally:
        record.close()
    if not deliveries or any(d.kind == "outputs" or d.state == "pending" for d in deliveries):
        return None
    return result, deliveries


def test_the_sr_reaches_a_pacs_without_3d_sr_and_one_without_sr_refuses_it_for_good(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    with (
        storescp(tmp_path / "legacy", (COMPREHENSIVE_SR, SECONDARY_CAPTURE)) as legacy,
        storescp(tmp_path / "images-only", (SECONDARY_CAPTURE,)) as images_only,
    ):
        listener = Listener(
            home,
            free_port(),
            [legacy.destination("legacy"), images_only.destination("images-only")],
            extra_env={"DXASSIST_DELIVERY_MAX_ATTEMPTS": "5"},
        )
        study = new_uid()
        listener.start()
        try:
            storescu(
                [write(tmp_path / "pa.dcm", chest_cr(study=study))], port=listener.port, called=LISTENER_AET
            )
            result, deliveries = wait_until(
                lambda: _settled(listener, study), timeout=90, interval=0.5, what="every delivery settled"
            )
        finally:
            listener.stop()
        positives = sum(1 for f in result.findings if f.positive)
        assert positives, "the bright blob must make the tiny model call some findings positive"

        # The PACS that stores Comprehensive SR (not 3D) got the report and every heatmap.
        by_destination = {
            name: [d for d in deliveries if d.destination == name] for name in ("legacy", "images-only")
        }
        assert [d.state for d in by_destination["legacy"]] == ["sent"] * (1 + positives)
        stored = legacy.stored()
        assert sorted(str(ds.SOPClassUID) for ds in stored) == sorted(
            [COMPREHENSIVE_SR_UID] + [SECONDARY_CAPTURE_UID] * positives
        )
        assert all(ds.StudyInstanceUID == study for ds in stored)

        # The PACS that stores no SR: the SR is a dead letter after one attempt, with a reason an operator
        # can act on; the heatmaps behind it in the queue were delivered.
        [sr] = [d for d in by_destination["images-only"] if d.kind == "sr"]
        assert (sr.state, sr.attempts, sr.error) == ("dead", 1, "destination_refused")
        assert COMPREHENSIVE_SR_UID in sr.last_error and "Comprehensive SR" in sr.last_error
        assert "Abstract Syntax Not Supported" in sr.last_error
        captures = [d for d in by_destination["images-only"] if d.kind == "sc"]
        assert [d.state for d in captures] == ["sent"] * positives
        assert [str(ds.SOPClassUID) for ds in images_only.stored()] == [SECONDARY_CAPTURE_UID] * positives


def test_an_object_whose_sop_class_the_pacs_does_not_store_is_refused_not_retried(tmp_path: Path) -> None:
    with storescp(tmp_path / "legacy", (COMPREHENSIVE_SR, SECONDARY_CAPTURE)) as legacy:
        destination = Destination.model_validate(legacy.destination("legacy"))
        with pytest.raises(DeliveryFailed) as refused:
            send(destination, chest_cr(study=new_uid()), CR_IMAGE)
        assert not refused.value.retryable
        assert refused.value.code == "destination_refused"
        assert CR_IMAGE in str(refused.value) and "Computed Radiography Image Storage" in str(refused.value)
        assert legacy.stored() == []


def test_a_pacs_that_is_down_is_still_retried(tmp_path: Path) -> None:
    """The permanent refusal is only for contexts the PACS rejected: no PACS listening is retryable."""
    destination = Destination(
        name="down", kind="dimse", host="127.0.0.1", port=free_port(), ae_title="NOBODY", timeout_seconds=5
    )
    with pytest.raises(DeliveryFailed) as failed:
        send(destination, chest_cr(study=new_uid()), CR_IMAGE)
    assert failed.value.retryable and failed.value.code == "destination_unreachable"


@pytest.mark.parametrize(
    ("status", "delivered"),
    [(0x0107, True), (0x0116, True), (0xB123, True), (0xB000, True), (0x0122, False), (0xC000, False)],
    ids=["attribute-list-error", "value-out-of-range", "other-Bxxx", "coercion", "sop-class", "failure"],
)
def test_a_warning_status_is_a_delivery_and_a_failure_status_a_refusal(status: int, delivered: bool) -> None:
    """A PACS (a pynetdicom storage SCP) that stores the object and answers ``status``: every warning
    status (PS3.7 C.3: stored, with a remark) counts as delivered; a failure status is a refusal."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComputedRadiographyImageStorage

    received: list[str] = []

    def store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return status

    scp = AE(ae_title="WARNPACS")
    scp.add_supported_context(ComputedRadiographyImageStorage)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    try:
        destination = Destination(
            name="warn", kind="dimse", host="127.0.0.1", port=port, ae_title="WARNPACS", timeout_seconds=5
        )
        if delivered:
            send(destination, chest_cr(study=new_uid()), CR_IMAGE)
        else:
            with pytest.raises(DeliveryFailed) as refused:
                send(destination, chest_cr(study=new_uid()), CR_IMAGE)
            assert not refused.value.retryable and refused.value.code == "destination_refused"
            assert f"0x{status:04X}" in str(refused.value)
    finally:
        server.shutdown()
    assert len(received) == 1
