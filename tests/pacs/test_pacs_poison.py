"""A poison study: what cannot be done ends in the dead-letter queue after its attempts, never loops.

The study's header once tripped the SR builder (multi-valued Patient's Name, Specific Character Set
``ISO_IR 999``, birth date written ``1923-04-17``) and was analysed again every 5 s forever with its files
left in ``incoming/``. The writers now mend that header, so the test makes the other steps fail the way
operators do: an organisation root too long for the writers' UIDs (the build fails), then a destination
with the wrong AE title (the PACS rejects every association). Each ends in the dead-letter queue after the
configured attempts, ``dxassist dead-letter list`` shows it with its error code, and once the operator
fixes the configuration, ``dxassist dead-letter retry`` delivers every object to Orthanc exactly once.
"""

from __future__ import annotations

import json
import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import (
    LISTENER_AET,
    Listener,
    Pacs,
    dxassist,
    free_port,
    orthanc_destination,
    storescu,
    wait_until,
)

from inference.record import Record

pytestmark = pytest.mark.integration

# 60 characters: a valid UID, but derived UIDs would pass 64 characters, so the writers refuse it.
BAD_ORG_ROOT = "1.2.826.0.1.3680043.10.1453.11111111111.22222222222.33333333"
BUILD_ATTEMPTS, DELIVERY_ATTEMPTS = 2, 3


def _poison_study(study: str) -> bytes:
    from pydicom import config, dcmread
    from pydicom.dataelem import DataElement

    ds = dcmread(BytesIO(chest_cr(study=study, blob=True, seed=7)))
    out = BytesIO()
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")  # pydicom warns about exactly the values this study needs
        ds.PatientName = ["Doe^John", "Roe^Jane"]
        ds.add(DataElement(0x00080005, "CS", "ISO_IR 999"))
        ds.add(DataElement(0x00100030, "DA", "1923-04-17"))
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _dead_letters(home: Path) -> list[dict[str, Any]]:
    done = dxassist(home, "dead-letter", "list", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def _state(listener: Listener, study: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[Any]]:
    """The study's result, its build row (None once built) and its deliveries, from the listener's record."""
    record = Record(listener.record_url)
    try:
        result = record.results.latest_for_study(study_instance_uid=study)
        if result is None:
            return None, None, []
        rid = result.result_id
        return result, record.builds.for_result(result_id=rid), record.outbox.deliveries(result_id=rid)
    finally:
        record.close()


def test_a_poison_study_ends_in_the_dead_letter_queue_and_a_retry_delivers_it_once(
    pacs: Pacs, tmp_path: Path
) -> None:
    home = tmp_path / "poison-home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    good = orthanc_destination(pacs.orthanc.dicom_port)
    wrong_ae = {**good, "ae_title": "NOTORTHANC"}  # Orthanc checks the called AE title: rejected
    limits = {
        "DXASSIST_BUILD_MAX_ATTEMPTS": str(BUILD_ATTEMPTS),
        "DXASSIST_DELIVERY_MAX_ATTEMPTS": str(DELIVERY_ATTEMPTS),
    }
    listener = Listener(
        home, free_port(), [wrong_ae], extra_env={**limits, "DXASSIST_ORG_ROOT": BAD_ORG_ROOT}
    )
    study = new_uid()
    listener.start()
    try:
        storescu(
            [write(tmp_path / "poison.dcm", _poison_study(study))], port=listener.port, called=LISTENER_AET
        )

        # 1. The outputs cannot be built: after BUILD_ATTEMPTS the build is a dead letter; the result is
        #    filed and the listener's incoming/ is clean (no endless re-analysis).
        def build_dead() -> Any:
            result, build, _deliveries = _state(listener, study)
            return (result, build) if build is not None and build["state"] == "dead" else None

        result, build = wait_until(build_dead, timeout=60, what="the failed build to reach the dead letters")
        assert build["attempts"] == BUILD_ATTEMPTS
        assert build["error_code"] == "output_build_failed" or build["error_code"].startswith("invalid")
        assert not any((home / "incoming").iterdir())
        [item] = _dead_letters(home)
        assert item["id"] == f"build:{build['id']}" and item["subject"] == result.result_id
        assert item["code"] == build["error_code"] and item["attempts"] == BUILD_ATTEMPTS
        # No patient data in what the operator's listing prints.
        listing = dxassist(home, "dead-letter", "list").stdout
        assert "Doe" not in listing and "IPP-" not in listing
        assert "1923-04-17" not in listing and "19230417" not in listing  # the year alone: in a random id
    finally:
        listener.stop()

    # 2. The operator fixes the organisation root (not yet the destination) and retries the build.
    listener.extra_env = limits
    listener.start()
    try:
        retried = dxassist(home, "dead-letter", "retry", item["id"])
        assert retried.returncode == 0, retried.stderr

        def deliveries_dead() -> Any:
            _result, build, deliveries = _state(listener, study)
            done = build is None and deliveries and all(d.state == "dead" for d in deliveries)
            return deliveries if done else None

        deliveries = wait_until(deliveries_dead, timeout=90, what="every delivery to reach the dead letters")
        positives = sum(1 for f in result.findings if f.positive)
        assert len(deliveries) == 1 + positives
        assert all(d.attempts == DELIVERY_ATTEMPTS for d in deliveries)
        assert {d.error for d in deliveries} == {"destination_unreachable"}
        listed = _dead_letters(home)
        assert all(i["kind"] == "delivery" and i["code"] == "destination_unreachable" for i in listed)
        assert len(listed) == len(deliveries)
        assert pacs.orthanc.study_id(study) is None  # nothing reached the PACS
    finally:
        listener.stop()

    # 3. The operator fixes the destination and retries everything: each object arrives exactly once.
    listener.destinations = [good]
    listener.start()
    try:
        retried = dxassist(home, "dead-letter", "retry", "--all")
        assert retried.returncode == 0, retried.stderr

        def all_sent() -> Any:
            _result, _build, deliveries = _state(listener, study)
            return deliveries if deliveries and all(d.state == "sent" for d in deliveries) else None

        sent = wait_until(all_sent, timeout=60, what="every delivery after the retry")
        assert _dead_letters(home) == []
        study_id = pacs.orthanc.study_id(study)
        assert study_id is not None
        instances = pacs.orthanc.get(f"/studies/{study_id}/instances")
        sop_uids = sorted(
            pacs.orthanc.get(f"/instances/{i['ID']}")["MainDicomTags"]["SOPInstanceUID"] for i in instances
        )
        assert sop_uids == sorted(d.object for d in sent)  # exactly once each
        sr = [
            i
            for i in instances
            if pacs.orthanc.get(f"/instances/{i['ID']}/tags?simplify")["Modality"] == "SR"
        ]
        tags = pacs.orthanc.get(f"/instances/{sr[0]['ID']}/tags?simplify")
        assert tags["PatientName"] == "Doe^John" and tags["PatientBirthDate"] == "19230417"
        assert not any((home / "incoming").iterdir())
    finally:
        listener.stop()
