"""A STOW-RS destination that answers 200 without storing the object: the object is not marked sent.

Debian's Orthanc 1.10.1 with its DICOMweb plugin 1.7, its storage full (``MaximumStorageSize`` reached by
a protected patient), answers a STOW-RS request with HTTP 200 and a response whose Referenced SOP
Sequence and Failed SOP Sequence are both empty. Taken at its status, the SR or capture was recorded
``sent``, its bytes dropped, and it never reached the PACS. The answer's content decides: not listed as
stored, the object is retried, and once the PACS has room it is stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import PASSWORD, USER, Orthanc, free_port, require_tools

from inference.config import Destination
from inference.delivery import DeliveryFailed, send

pytestmark = pytest.mark.integration


def _full_orthanc(root: Path) -> Orthanc:
    """Orthanc with 1 MB of storage, most of it held by a protected patient (never recycled)."""
    orthanc = Orthanc(root, free_port(), free_port(), free_port())
    config_path = root / "orthanc.json"
    config = json.loads(config_path.read_text())
    config["MaximumStorageSize"] = 1  # MB
    config_path.write_text(json.dumps(config))
    return orthanc


def test_a_200_that_lists_the_object_neither_stored_nor_failed_is_retried_not_marked_sent(
    tmp_path: Path,
) -> None:
    require_tools()
    orthanc = _full_orthanc(tmp_path)
    orthanc.start()
    try:
        with orthanc.client() as client:
            filler = client.post("/instances", content=chest_cr(study=new_uid(), size=600))
            filler.raise_for_status()
            patient = filler.json()["ParentPatient"]
            client.put(f"/patients/{patient}/protected", content="1").raise_for_status()
        destination = Destination.model_validate(
            {
                "name": "orthanc",
                "kind": "stowrs",
                "url": f"{orthanc.url}/dicom-web",
                "username": USER,
                "password": PASSWORD,
                "timeout_seconds": 30,
            }
        )
        study, sop = new_uid(), new_uid()
        payload = chest_cr(study=study, sop=sop, size=512)

        with pytest.raises(DeliveryFailed) as full:
            send(destination, payload, CR_IMAGE)
        assert (full.value.retryable, full.value.code) == (True, "destination_busy")
        assert "without listing the object as stored" in str(full.value)
        assert orthanc.study_id(study) is None  # really not stored

        # The PACS gets room; the retry stores the object.
        with orthanc.client() as client:
            client.put(f"/patients/{patient}/protected", content="0").raise_for_status()
            client.delete(f"/patients/{patient}").raise_for_status()
        send(destination, payload, CR_IMAGE)
        with httpx.Client(auth=(USER, PASSWORD), trust_env=False, timeout=30) as client:
            found = client.get(f"{orthanc.url}/dicom-web/studies/{study}/instances").json()
        assert [item["00080018"]["Value"][0] for item in found] == [sop]
    finally:
        orthanc.stop()
