"""Hostile values on the DIMSE path: a study the record can never hold is dropped at once, not retried
into the dead-letter folder (which an operator would release to fail again)."""

from __future__ import annotations

from io import BytesIO

import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import LISTENER_AET, TEST_AET, Pacs, wait_until

from inference.dicom._stable import study_key
from inference.record import Record

pytestmark = pytest.mark.integration


def test_an_issuer_too_long_once_upper_cased_is_dropped_not_retried(pacs: Pacs) -> None:
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    study = new_uid()
    ds = dcmread(BytesIO(chest_cr(study=study)))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.IssuerOfPatientID = "ﬃ" * 64  # 64 characters (LO's limit), 192 once upper-cased
    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", pacs.listener.port, ae_title=LISTENER_AET)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(ds).Status) == 0x0000  # valid DICOM: accepted on arrival
    finally:
        assoc.release()
    folder = pacs.listener.home / "incoming" / study_key(study, TEST_AET)
    wait_until(lambda: not folder.exists(), timeout=60, what="the dropped study's folder to be cleaned")
    assert not (pacs.listener.home / "dead-letter" / "studies" / study_key(study, TEST_AET)).exists()
    record = Record(pacs.listener.record_url)
    try:
        assert record.results.latest_for_study(study_instance_uid=study) is None
    finally:
        record.close()
    log = (pacs.listener.home / "logs" / "listener.jsonl").read_text()
    assert "a received study was dropped: a value does not fit the record" in log
