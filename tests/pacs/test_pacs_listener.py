"""The DIMSE listener as a sender sees it: AE allow-list, failure statuses, files on disk, restart."""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING

import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import LISTENER_AET, TEST_AET, Pacs, wait_until

from inference.dicom._stable import study_key
from inference.record import Record

if TYPE_CHECKING:
    from pydicom import Dataset
    from pynetdicom.association import Association

pytestmark = pytest.mark.integration


def _associate(pacs: Pacs, calling: str = TEST_AET) -> Association:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae.associate("127.0.0.1", pacs.listener.port, ae_title=LISTENER_AET)


def _dataset(data: bytes) -> Dataset:
    from pydicom import dcmread

    return dcmread(BytesIO(data))


def test_unknown_calling_ae_title_is_rejected(pacs: Pacs) -> None:
    assoc = _associate(pacs, calling="INTRUDER")
    assert assoc.is_rejected


def test_refused_instances_get_failure_statuses_and_the_association_stays_up(pacs: Pacs) -> None:
    study = new_uid()
    not_chest_modality = _dataset(chest_cr(study=study, modality="CT"))
    too_large = _dataset(chest_cr(study=study, size=800))  # 1.3 MB > the listener's 1 MB limit
    truncated = _dataset(chest_cr(study=study))
    truncated.PixelData = truncated.PixelData[:1000]
    good_sop = new_uid()
    good = _dataset(chest_cr(study=study, sop=good_sop))

    assoc = _associate(pacs)
    assert assoc.is_established
    try:
        answers = [assoc.send_c_store(ds) for ds in (not_chest_modality, too_large, truncated)]
        assert [int(a.Status) for a in answers] == [0xA900, 0xA700, 0xC000]
        # The sender's log says why, in the reason codes of docs/pacs.md (never the data set's values).
        assert [str(a.ErrorComment) for a in answers] == [
            "dxassist refused: unsupported_modality",
            "dxassist refused: instance_too_large",
            "dxassist refused: pixel_length_mismatch",
        ]
        assert assoc.is_established
        assert int(assoc.send_c_store(good).Status) == 0x0000
        # On disk before the success status came back (the quiet period has not passed yet).
        assert (pacs.listener.home / "incoming" / study_key(study, TEST_AET) / f"{good_sop}.dcm").is_file()
    finally:
        assoc.release()


def test_a_study_received_before_a_restart_is_analysed_after_it(pacs: Pacs) -> None:
    study = new_uid()
    assoc = _associate(pacs)
    try:
        assert int(assoc.send_c_store(_dataset(chest_cr(study=study))).Status) == 0x0000
    finally:
        assoc.release()
    pacs.listener.stop()  # within the quiet period: nothing analysed yet
    folder = pacs.listener.home / "incoming" / study_key(study, TEST_AET)
    assert any(folder.glob("*.dcm"))
    pacs.listener.start()

    def analysed() -> bool:
        record = Record(pacs.listener.record_url)
        try:
            return record.results.latest_for_study(study_instance_uid=study) is not None
        finally:
            record.close()

    wait_until(analysed, timeout=30, what="the result of the study received before the restart")
    wait_until(lambda: not folder.exists(), timeout=10, what="the study's folder to be cleaned")


def test_an_instance_with_several_patient_ids_is_refused_with_the_reason(pacs: Pacs) -> None:
    """Patient ID has value multiplicity 1: "IPP1\\IPP2" was filed as the text "['IPP1', 'IPP2']"."""
    study = new_uid()
    several = _dataset(chest_cr(study=study))
    several.PatientID = ["IPP-PACS-1", "IPP-PACS-2"]
    assoc = _associate(pacs)
    assert assoc.is_established
    try:
        # Cannot understand: refused for good, never "retry later"; the operator's log says why.
        answer = assoc.send_c_store(several)
        assert int(answer.Status) == 0xC000
        assert answer.ErrorComment == "dxassist refused: multi_valued_identifier"
        assert "IPP-PACS" not in answer.ErrorComment
        assert int(assoc.send_c_store(_dataset(chest_cr(study=study))).Status) == 0x0000
    finally:
        assoc.release()
    assert (
        len(list((pacs.listener.home / "incoming" / study_key(study, TEST_AET)).glob("*.dcm"))) == 1
    )  # the good one only
    log = pacs.listener.log.read_text()
    assert "multi_valued_identifier" in log and "IPP-PACS-2" not in log
