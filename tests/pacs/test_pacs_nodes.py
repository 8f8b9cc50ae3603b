"""The DICOM node registry (``DXASSIST_DIMSE_NODES``): unknown AEs refused at association, even with no
node configured; a registered title from another host refused; an open listener only when the operator
names the facility its unknown senders' results belong to; DIMSE results owned by the node's facility.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import LISTENER_AET, NODE_FACILITY, TEST_AET, Pacs, free_port, wait_until

from inference.config import DimseSettings, Settings
from inference.dicom import Limits
from inference.dicom._stable import StudyCollector, study_key
from inference.dimse._listener import _make_ae, _Node
from inference.record import Record

if TYPE_CHECKING:
    from pynetdicom.association import Association

pytestmark = pytest.mark.integration
VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture(autouse=True)
def _receive_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener's receive mode (`dxassist listen` sets it process-wide): each dataset streamed to a file.

    Set and undone per test, so the result does not depend on which test of the session ran before.
    """
    import tempfile

    from pynetdicom import _config

    receiving = tmp_path / "receiving"
    receiving.mkdir()
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", True)
    monkeypatch.setattr(tempfile, "tempdir", str(receiving))


@contextmanager
def _listener(tmp_path: Path, nodes: list[dict[str, str]], open_facility: str | None = None) -> Iterator[int]:
    """The listener's own AE and handlers, on a free loopback port (no models: C-ECHO and C-STORE only)."""
    pacs = Settings(dimse_nodes=nodes, dimse_open_facility=open_facility).dimse
    node = _Node(
        collector=StudyCollector(tmp_path / "incoming", quiet_seconds=60),
        limits=Limits(max_instance_bytes=10_000_000, max_pixels=10_000_000, max_instances=8),
        target_size=None,
        registry=pacs.node_facility,
    )
    ae, handlers = _make_ae(LISTENER_AET, pacs, node)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield port
    finally:
        server.shutdown()


def _associate(port: int, calling: str) -> Association:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title=LISTENER_AET)


def _store(assoc: Association) -> int:
    from pydicom import dcmread

    return int(assoc.send_c_store(dcmread(BytesIO(chest_cr(study=new_uid())))).Status)


def test_with_no_node_registered_every_ae_is_refused(tmp_path: Path) -> None:
    with _listener(tmp_path, nodes=[]) as port:
        for calling in ("ANY-SCU", "ORTHANC", "STORESCU"):
            assert _associate(port, calling).is_rejected, calling


def test_registered_nodes_only_and_from_their_host(tmp_path: Path) -> None:
    nodes = [
        {"ae_title": "PACS_A", "facility": "F1", "host": "127.0.0.1"},
        {"ae_title": "PACS_FAR", "facility": "F2", "host": "10.99.99.99"},
    ]
    with _listener(tmp_path, nodes=nodes) as port:
        assert _associate(port, "INTRUDER").is_rejected
        good = _associate(port, "PACS_A")
        assert good.is_established
        try:
            assert _store(good) == 0x0000
        finally:
            good.release()
        # The right title from the wrong host: aborted, and nothing it sends is stored.
        spoofed = _associate(port, "PACS_FAR")
        if spoofed.is_established:
            try:
                status = _store(spoofed)
            except Exception:  # the listener aborted the association under our feet
                status = -1
            assert status != 0x0000
        # The listener's A-ABORT reaches the requestor's thread a moment later: wait for it, never store.
        wait_until(
            lambda: not spoofed.is_established,
            timeout=30, what="the spoofed association aborted",
        )  # fmt: skip


def test_an_open_listener_gives_unknown_senders_results_to_the_named_facility(tmp_path: Path) -> None:
    nodes = [{"ae_title": "PACS_A", "facility": "F1"}]
    pacs = Settings(dimse_nodes=nodes, dimse_open_facility="F-OPEN").dimse
    assert pacs.node_facility("PACS_A") == "F1"
    assert pacs.node_facility("WHOEVER") == "F-OPEN"
    assert DimseSettings().node_facility("WHOEVER") is None
    with _listener(
        tmp_path, nodes=[{"ae_title": "PACS_A", "facility": "F1"}], open_facility="F-OPEN"
    ) as port:
        anyone = _associate(port, "WHOEVER")
        assert anyone.is_established
        anyone.release()
    with pytest.raises(ValueError, match="registered once"):
        Settings(dimse_nodes=[{"ae_title": "A", "facility": "F1"}] * 2)
    json.dumps(pacs.model_dump())  # the settings stay plain data


def test_dimse_results_belong_to_the_node_facility(pacs: Pacs) -> None:
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    study = new_uid()
    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", pacs.listener.port, ae_title=LISTENER_AET)
    try:
        assert int(assoc.send_c_store(dcmread(BytesIO(chest_cr(study=study)))).Status) == 0x0000
    finally:
        assoc.release()

    def filed() -> dict | None:
        record = Record(pacs.listener.record_url)
        try:
            return record.results.latest_for_study(study_instance_uid=study)
        finally:
            record.close()

    wait_until(lambda: filed() is not None, timeout=30, what="the DIMSE study's result")
    result = filed()
    assert result is not None
    record = Record(pacs.listener.record_url)
    try:
        assert record.results.patient_of(result_id=result.result_id) == (
            result.patient.id,
            NODE_FACILITY,
        )
        _total, events = record.audit.search(agent=f"dimse:{TEST_AET}", limit=100)
        mine = [e for e in events if e["resource_id"] == result.result_id]
        assert [(e["facility"], e["outcome"]) for e in mine] == [(NODE_FACILITY, "success")]
    finally:
        record.close()


def _send(port: int, calling: str, blobs: list[bytes]) -> list[int]:
    from pydicom import dcmread

    assoc = _associate(port, calling)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(dcmread(BytesIO(blob))).Status) for blob in blobs]
    finally:
        assoc.release()


def test_two_nodes_sending_the_same_study_uid_never_mix_their_instances(tmp_path: Path) -> None:
    """Another facility's AE reusing a Study Instance UID (a collision, or a hostile sender) neither adds
    instances to the first facility's pending study nor replaces them, and the spool still recovers."""
    from pydicom import dcmread

    nodes = [{"ae_title": "PACS_A", "facility": "F1"}, {"ae_title": "PACS_B", "facility": "F2"}]
    study, shared_sop = new_uid(), new_uid()
    a_only, b_only = new_uid(), new_uid()
    with _listener(tmp_path, nodes=nodes) as port:
        assert _send(
            port, "PACS_A", [chest_cr(study=study, sop=s, seed=1) for s in (shared_sop, a_only)]
        ) == [0, 0]
        assert _send(
            port, "PACS_B", [chest_cr(study=study, sop=s, seed=2) for s in (shared_sop, b_only)]
        ) == [0, 0]
    # A restart takes up what is pending (quiet period 0: stable at once).
    collector = StudyCollector(tmp_path / "incoming", quiet_seconds=0)
    assert len(collector.recover()) == 2
    studies = {s.sender: s for s in collector.stable()}
    assert set(studies) == {"PACS_A", "PACS_B"}
    for sender, own, seed in (("PACS_A", a_only, 1), ("PACS_B", b_only, 2)):
        files = studies[sender].files
        assert {f.stem for f in files} == {shared_sop, own}
        # Each facility's copy of the shared SOP is the one its node sent (B did not replace A's).
        expected = dcmread(BytesIO(chest_cr(study=study, sop=shared_sop, seed=seed))).PixelData
        assert dcmread(studies[sender].folder / f"{shared_sop}.dcm").PixelData == expected


def test_a_spool_of_the_earlier_layout_is_recovered_and_joined_by_its_node(tmp_path: Path) -> None:
    """A study folder named by the Study UID alone (before the node was part of the name) is analysed
    after the upgrade together with the instances its node sends after the restart."""
    study, before, after = new_uid(), new_uid(), new_uid()
    old = tmp_path / "incoming" / study
    old.mkdir(parents=True)
    (old / f"{before}.dcm").write_bytes(chest_cr(study=study, sop=before))
    (old / "sender.txt").write_text(TEST_AET, "ascii")
    collector = StudyCollector(tmp_path / "incoming", quiet_seconds=0)
    assert len(collector.recover()) == 1
    collector.store(
        study_instance_uid=study,
        sop_instance_uid=after,
        data=chest_cr(study=study, sop=after),
        sender=TEST_AET,
    )
    (pending,) = collector.stable()
    assert pending.sender == TEST_AET and pending.folder.name == study_key(study, TEST_AET)
    assert {f.stem for f in pending.files} == {before, after}
