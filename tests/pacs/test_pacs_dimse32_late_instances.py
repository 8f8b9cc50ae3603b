"""Instances of a study sent after the study was analysed and its spool folder removed, as a PACS sends
them (dcmtk's storescu, an instance forwarded late, a view taken later).

They were analysed alone, as a new study: a late lateral was refused (``no_frontal_view``, as for a study
of laterals only) although its study had been analysed from its PA, and a late AP made a second result
from the AP that superseded the PA's. They now join the study the record holds: its view is the best
frontal of them all, so the PA's result stands (nothing refused, nothing filed, one SR in the PACS), and a
better view (a PA after an AP) is analysed, its SR naming the earlier one.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, Pacs, all_sent, storescu, wait_until

from inference.dicom._stable import study_key
from inference.record import Record

pytestmark = pytest.mark.integration


def _log(pacs: Pacs) -> Path:
    return pacs.listener.home / "logs" / "listener.jsonl"


def _lines_after(pacs: Pacs, offset: int) -> list[dict[str, Any]]:
    with open(_log(pacs), "rb") as log:
        log.seek(offset)
        return [json.loads(line) for line in log.read().decode().splitlines() if line.strip()]


def _radiograph(study: str, view: str, *, seed: int = 0) -> bytes:
    """A chest CR of ``view``; a frontal one (PA, AP) with the rows to the patient's left (``L\\F``)."""
    from pydicom import dcmread

    data = chest_cr(study=study, view=view, blob=view != "LL", seed=seed)
    if view == "LL":
        return data
    ds = dcmread(BytesIO(data))
    ds.PatientOrientation = ["L", "F"]
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _first_result(pacs: Pacs, study: str, view: str) -> Any:
    """Send one instance of ``study`` (``view``); its result once its outputs are in Orthanc and its folder
    is gone from the spool."""
    path = write(pacs.work / study / f"{view}.dcm", _radiograph(study, view))
    storescu([path], port=pacs.listener.port, called=LISTENER_AET)
    result, _ = wait_until(
        lambda: all_sent(pacs.listener, study), timeout=60, interval=0.5, what="the first result sent"
    )
    folder = _folder(pacs, study)
    wait_until(lambda: not folder.exists(), timeout=30, what="the analysed study's folder removed")
    return result


def _folder(pacs: Pacs, study: str) -> Path:
    return pacs.listener.home / "incoming" / study_key(study, "STORESCU")


def _send_late(pacs: Pacs, study: str, view: str, *, seed: int) -> list[dict[str, Any]]:
    """Send a late instance; the listener's log lines from then until its analysis is over."""
    offset = _log(pacs).stat().st_size
    path = write(pacs.work / study / f"late-{view}.dcm", _radiograph(study, view, seed=seed))
    storescu([path], port=pacs.listener.port, called=LISTENER_AET)
    folder = _folder(pacs, study)  # made by the late instance: storescu returned once it was kept
    wait_until(lambda: not folder.exists(), timeout=60, interval=0.3, what="the late instance's analysis")
    return _lines_after(pacs, offset)


def _results(pacs: Pacs, study: str) -> list[str]:
    from sqlalchemy import text

    record = Record(pacs.listener.record_url)
    try:
        with record.engine.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT results.id FROM results JOIN studies ON results.study_id = studies.id "
                        "WHERE studies.study_instance_uid = :uid"
                    ),
                    {"uid": study},
                ).scalars()
            )
    finally:
        record.close()


def _srs_in_orthanc(pacs: Pacs, study: str) -> list[str]:
    """The SOP Instance UIDs of the SRs Orthanc holds in ``study``."""
    study_id = pacs.orthanc.study_id(study)
    assert study_id is not None
    return [
        instance["MainDicomTags"]["SOPInstanceUID"]
        for series in pacs.orthanc.get(f"/studies/{study_id}/series")
        if series["MainDicomTags"].get("Modality") == "SR"
        for instance in pacs.orthanc.get(f"/series/{series['ID']}/instances")
    ]


def _codes(lines: list[dict[str, Any]]) -> list[str]:
    return [str(line.get("code")) for line in lines if line.get("event") == "dimse_study"]


def test_a_late_lateral_joins_its_analysed_study_instead_of_being_refused(pacs: Pacs) -> None:
    study = new_uid()
    first = _first_result(pacs, study, "PA")

    lines = _send_late(pacs, study, "LL", seed=3)

    assert "no_frontal_view" not in _codes(lines)
    assert _codes(lines) == ["already_analysed"]
    (stands,) = [line for line in lines if line.get("code") == "already_analysed"]
    assert (stands["level"], stands["outcome"], stands["result_id"]) == (
        "INFO",
        "no_frontal_view",
        first.result_id,
    )
    assert _results(pacs, study) == [first.result_id]
    assert len(_srs_in_orthanc(pacs, study)) == 1


def test_a_late_ap_leaves_the_result_of_the_pa_it_ranks_below(pacs: Pacs) -> None:
    study = new_uid()
    first = _first_result(pacs, study, "PA")

    lines = _send_late(pacs, study, "AP", seed=4)

    assert _codes(lines) == ["already_analysed"]
    (stands,) = [line for line in lines if line.get("code") == "already_analysed"]
    assert (stands["outcome"], stands["result_id"]) == ("lower_ranked_view", first.result_id)
    assert _results(pacs, study) == [first.result_id]
    assert len(_srs_in_orthanc(pacs, study)) == 1
    # The read that decided it is on the trail: the node's, on the study's result.
    record = Record(pacs.listener.record_url)
    try:
        entries = record.audit.search(agent="dimse:STORESCU", limit=500)[1]
    finally:
        record.close()
    assert {
        (e["action"], e["outcome"], e["resource_type"])
        for e in entries
        if e["resource_id"] == first.result_id
    } >= {("studies:submit", "success", "Result")}


def test_a_late_pa_after_an_ap_is_analysed_and_supersedes_its_result(pacs: Pacs) -> None:
    from pydicom import dcmread

    study = new_uid()
    first = _first_result(pacs, study, "AP")
    (first_sr,) = _srs_in_orthanc(pacs, study)

    lines = _send_late(pacs, study, "PA", seed=5)

    assert "already_analysed" not in _codes(lines)

    def second_sent() -> tuple[Any, list[Any]] | None:
        found = all_sent(pacs.listener, study)
        return found if found is not None and found[0].result_id != first.result_id else None

    second, deliveries = wait_until(second_sent, timeout=60, interval=0.5, what="the PA's result sent")
    assert sorted(_results(pacs, study)) == sorted([first.result_id, second.result_id])
    (second_sr,) = [d.object for d in deliveries if d.kind == "sr"]
    assert sorted(_srs_in_orthanc(pacs, study)) == sorted([first_sr, second_sr])
    study_id = pacs.orthanc.study_id(study)
    (sr_id,) = [
        found["ID"]
        for found in pacs.orthanc.get(f"/studies/{study_id}/instances")
        if found["MainDicomTags"]["SOPInstanceUID"] == second_sr
    ]
    sr = dcmread(BytesIO(pacs.orthanc.get(f"/instances/{sr_id}/file")))
    (predecessor,) = sr.PredecessorDocumentsSequence
    (series,) = predecessor.ReferencedSeriesSequence
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first_sr
