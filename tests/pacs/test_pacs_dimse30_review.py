"""Adversarial review of ``dxassist listen``: what a hostile or broken peer costs the audit trail and the
disk the record shares."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, TEST_AET, Listener, free_port, require_tools, wait_until

from inference.record import Record

pytestmark = pytest.mark.integration


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    require_tools()
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    started = Listener(home, free_port(), [])
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _associate_as(port: int, calling: str) -> bool:
    """Whether an association as ``calling`` (pynetdicom, C-ECHO context) is accepted."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 10
    association = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET)
    try:
        return bool(association.is_established)
    finally:
        if association.is_established:
            association.release()
        ae.shutdown()


def test_a_peer_cycling_calling_ae_titles_does_not_grow_the_audit_trail_an_entry_per_association(
    listener: Listener,
) -> None:
    # Unknown titles are the sender's free choice: a loop of associations, each under a new title, was one
    # append-only entry (and one write under the record's lock) per association, without bound.
    for n in range(8):
        assert not _associate_as(listener.port, f"PROBE{n:03d}")
    record = Record(listener.record_url)
    try:
        total, entries = record.audit.search(limit=50)
        refusals = [e for e in entries if e["action"] == "dimse:associate"]
    finally:
        record.close()
    # One entry for the address this minute, naming the first title it tried; the log has every refusal.
    assert [(e["subject"], e["outcome"], e["resource_id"], e["client"]) for e in refusals] == [
        ("dimse:PROBE000", "denied", "unknown_node", "127.0.0.1")
    ]


def test_a_c_store_is_refused_out_of_resources_when_the_spool_disk_is_nearly_full(tmp_path: Path) -> None:
    # The spool shares its file system with the record by default: filled to the last byte, nothing could
    # be filed any more, not even the studies already received (whose filing would free their space). A
    # reserve larger than this disk's free space stands for a disk that is nearly full.
    from pydicom import dcmread
    from pynetdicom import AE

    require_tools()
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    # Just under the disk's size (a reserve as large as the disk is refused at start: every store would
    # fail), and above what is free: the disk reads as nearly full.
    reserve = shutil.disk_usage(home).total - 1
    listener = Listener(home, free_port(), [], extra_env={"DXASSIST_DIMSE_MIN_FREE_BYTES": str(reserve)})
    listener.start()
    try:
        dataset = dcmread(write(tmp_path / "a" / "cr.dcm", chest_cr(study=new_uid())))
        ae = AE(ae_title=TEST_AET)
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
        ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
        association = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
        try:
            assert association.is_established
            status = association.send_c_store(dataset)
            # Out of resources, with the reason in the Error Comment: the sender keeps it and tries later.
            assert (status.Status, status.ErrorComment) == (0xA700, "dxassist refused: storage_full")
            assert association.is_established  # the association stays up
        finally:
            if association.is_established:
                association.release()
            ae.shutdown()
        incoming = home / "incoming"
        assert not incoming.exists() or not any(incoming.rglob("*.dcm"))
        assert not any((home / "receiving").rglob("*.dcm"))
    finally:
        listener.stop()
    assert "storage_full" in listener.log.read_text() + (home / "logs" / "listener.jsonl").read_text()


def test_an_association_with_nothing_the_listener_supports_is_named_in_its_log(listener: Listener) -> None:
    # A modality set up to send what the listener does not take (a CT, a CR only in HTJ2K) gets an
    # association whose every presentation context is rejected: it sends nothing. The listener's log said
    # "association accepted" then "released", and the operator could not tell why no study arrived.
    from pynetdicom import AE

    ct, cr, htj2k = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.1.2.4.201"
    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(ct, "1.2.840.10008.1.2.1")
    ae.add_requested_context(cr, htj2k)
    ae.acse_timeout = ae.network_timeout = 10
    association = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    try:
        assert not association.accepted_contexts  # pynetdicom aborts an association it cannot use
    finally:
        if association.is_established:
            association.release()
        ae.shutdown()
    log = listener.home / "logs" / "listener.jsonl"

    def warned() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        return [line for line in lines if line.get("code") == "no_presentation_context"]

    (line,) = wait_until(warned, timeout=10, what="the association without a usable context logged")
    assert line["level"] == "WARNING"
    # What it proposed (SOP classes and transfer syntaxes: UIDs, no patient data), so the operator can
    # tell the modality what to send instead.
    assert str(line["message"]).endswith(f"{cr} {htj2k}, {ct} 1.2.840.10008.1.2.1")
