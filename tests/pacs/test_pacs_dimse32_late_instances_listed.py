"""Late instances whose study's result stands are in the record's ImagingStudy, as the PACS holds them.

A lateral sent after its study's PA was analysed (or an AP after the PA) leaves the PA's result standing
(``already_analysed``), but the record did not file the instance: the FHIR ImagingStudy a hospital's
FHIR client reads still counted one instance in one series while the PACS and the hospital held two.
The late instance is now filed in the study (no second result, the SR untouched), audited for the node
on the ImagingStudy in the same transaction, and a resend of it is not filed twice. An instance the
record holds already is judged with its study too (an AP analysed with its PA and sent again alone made
a second result, from the AP).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pacs_dicom import new_uid, write
from _pacs_harness import (
    LISTENER_AET,
    NODE_FACILITY,
    Pacs,
    Serve,
    all_sent,
    start_serve,
    storescu,
    wait_until,
)
from fhirpy import SyncFHIRClient
from pydicom import dcmread
from test_pacs_dimse32_late_instances import (
    _codes,
    _first_result,
    _folder,
    _lines_after,
    _log,
    _radiograph,
    _results,
    _send_late,
    _srs_in_orthanc,
)

from inference.record import Record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def serve(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """``dxassist serve`` on the listener's record (a site runs both on one home), for its FHIR API."""
    logs = tmp_path_factory.mktemp("serve")
    env = {"DXASSIST_DESTINATIONS": json.dumps(pacs.listener.destinations)}
    server = start_serve(pacs.listener.home, env, subject="late", stdout=logs / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def _imaging_study(serve: Serve, patient_id: str, study: str) -> Any:
    """The FHIR ImagingStudy of ``study`` as fhirpy reads it, for a clinician of the node's facility."""
    fhir = SyncFHIRClient(
        f"{serve.url}/fhir", authorization=f"Bearer {serve.token('clinician', NODE_FACILITY)}"
    )
    found = [
        resource
        for resource in fhir.resources("ImagingStudy").search(patient=patient_id).fetch_all()
        if any(i["value"] == f"urn:oid:{study}" for i in resource["identifier"])
    ]
    assert len(found) == 1, found
    return found[0]


def _listed(imaging_study: Any) -> dict[str, set[str]]:
    """SOP Instance UIDs per series UID, as the ImagingStudy lists them."""
    return {
        series["uid"]: {instance["uid"] for instance in series["instance"]}
        for series in imaging_study["series"]
    }


def _sop_of(path: Path) -> tuple[str, str]:
    ds = dcmread(path, stop_before_pixels=True)
    return str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_a_late_lateral_whose_study_result_stands_is_listed_in_the_imaging_study(
    pacs: Pacs, serve: Serve
) -> None:
    study = new_uid()
    first = _first_result(pacs, study, "PA")
    before = _imaging_study(serve, first.patient.id, study)
    assert before["numberOfInstances"] == 1

    lines = _send_late(pacs, study, "LL", seed=6)

    assert _codes(lines) == ["already_analysed"]
    series, sop = _sop_of(pacs.work / study / "late-LL.dcm")
    after = _imaging_study(serve, first.patient.id, study)
    assert after.id == before.id
    assert (after["numberOfInstances"], after["numberOfSeries"]) == (2, 2)
    assert _listed(after)[series] == {sop}
    assert _listed(after) | _listed(before) == _listed(after)  # the PA's still listed
    assert after["meta"]["lastUpdated"] > before["meta"]["lastUpdated"]
    # No second result, no second SR: the PA's result and report stand as they were.
    assert _results(pacs, study) == [first.result_id]
    assert len(_srs_in_orthanc(pacs, study)) == 1
    # The filing is on the trail, the node's, on the ImagingStudy.
    record = Record(pacs.listener.record_url)
    try:
        entries = record.audit.search(agent="dimse:STORESCU", limit=500)[1]
    finally:
        record.close()
    assert ("studies:submit", "success", first.patient.id) in {
        (e["action"], e["outcome"], e["patient_id"])
        for e in entries
        if e["resource_type"] == "ImagingStudy" and e["resource_id"] == after.id
    }


def test_a_late_ap_is_listed_once_however_often_the_pacs_sends_it(pacs: Pacs, serve: Serve) -> None:
    study = new_uid()
    first = _first_result(pacs, study, "PA")

    assert _codes(_send_late(pacs, study, "AP", seed=7)) == ["already_analysed"]
    # The PACS sends the AP again (a forward retried): its result still stands, nothing filed twice.
    offset = _log(pacs).stat().st_size
    storescu([pacs.work / study / "late-AP.dcm"], port=pacs.listener.port, called=LISTENER_AET)
    folder = _folder(pacs, study)
    wait_until(lambda: not folder.exists(), timeout=60, interval=0.3, what="the resent AP's analysis")
    assert _codes(_lines_after(pacs, offset)) == ["already_analysed"]

    series, sop = _sop_of(pacs.work / study / "late-AP.dcm")
    imaging_study = _imaging_study(serve, first.patient.id, study)
    assert imaging_study["numberOfInstances"] == 2
    assert _listed(imaging_study)[series] == {sop}
    assert _results(pacs, study) == [first.result_id]
    assert len(_srs_in_orthanc(pacs, study)) == 1


def test_an_ap_analysed_with_its_pa_and_sent_again_alone_leaves_the_pa_result(pacs: Pacs) -> None:
    """The instances the record holds already are judged with the study too: the AP that came with the
    PA, forwarded again on its own, made a second result from the AP that superseded the PA's."""
    study = new_uid()
    paths = [
        write(pacs.work / study / f"{view}.dcm", _radiograph(study, view, seed=8)) for view in ("PA", "AP")
    ]
    storescu(paths, port=pacs.listener.port, called=LISTENER_AET)
    first, _ = wait_until(lambda: all_sent(pacs.listener, study), timeout=60, interval=0.5, what="the result")
    folder = _folder(pacs, study)
    wait_until(lambda: not folder.exists(), timeout=30, what="the analysed study's folder removed")

    offset = _log(pacs).stat().st_size
    storescu([paths[1]], port=pacs.listener.port, called=LISTENER_AET)
    wait_until(lambda: not folder.exists(), timeout=60, interval=0.3, what="the resent AP's analysis")

    assert _codes(_lines_after(pacs, offset)) == ["already_analysed"]
    assert _results(pacs, study) == [first.result_id]
    assert len(_srs_in_orthanc(pacs, study)) == 1
