"""Orthanc (Debian's package) pushes a study to ``dxassist serve`` with its DICOMweb plugin's STOW-RS.

The recipe of docs/pacs.md, run for real: a DicomWeb server entry pointing at dxassist's ``/dicomweb``
with a ``pacs`` bearer token in ``HttpHeaders``, a study uploaded to Orthanc over its REST API, then
``POST /dicom-web/servers/dxassist/stow`` as an asynchronous job. Orthanc 1.10's plugin sends a
73-character multipart boundary (over RFC 2046's 70), which dxassist must accept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import tiny_models
from _pacs_dicom import chest_cr, new_uid
from _pacs_harness import Orthanc, Serve, free_port, require_tools, start_serve, wait_until

pytestmark = pytest.mark.integration

FACILITY = "F-ORTHANC"


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Serve]]:
    """Orthanc with the DICOMweb plugin and a ``dxassist serve``, both on loopback."""
    require_tools()
    root = tmp_path_factory.mktemp("orthanc-push")
    home = root / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", root / "build")
    (root / "orthanc").mkdir()
    # No listener runs here: the harness's Lua route to a DIMSE listener fails harmlessly.
    orthanc = Orthanc(root / "orthanc", free_port(), free_port(), free_port())
    orthanc.start()
    try:
        serve = start_serve(home, {}, subject="orthanc", stdout=root / "serve.log")
        try:
            yield orthanc, serve
        finally:
            serve.stop()
    finally:
        orthanc.stop()


def test_orthanc_pushes_a_study_with_its_dicomweb_plugin_and_the_result_is_filed(
    wired: tuple[Orthanc, Serve],
) -> None:
    orthanc, serve = wired
    study = new_uid()
    server = {
        "Url": f"{serve.url}/dicomweb/",
        "HttpHeaders": {"Authorization": f"Bearer {serve.token('pacs', FACILITY)}"},
    }
    with orthanc.client() as client:
        assert client.put("/dicom-web/servers/dxassist", content=json.dumps(server)).status_code == 200
        for number, view in enumerate(("PA", "LL"), start=1):
            uploaded = client.post(
                "/instances", content=chest_cr(study=study, sop=f"{study}.{number}", view=view)
            )
            assert uploaded.status_code == 200, uploaded.text
        study_id = orthanc.study_id(study)
        assert study_id is not None
        started = client.post(
            "/dicom-web/servers/dxassist/stow",
            content=json.dumps({"Resources": [study_id], "Synchronous": False}),
        )
        assert started.status_code == 200, started.text
        job_id = started.json()["ID"]

        def finished() -> dict | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["State"] in ("Success", "Failure") else None

        job = wait_until(finished, timeout=120, interval=0.5, what="Orthanc's STOW-RS job")
    assert job["State"] == "Success", job
    radiologist = {"Authorization": f"Bearer {serve.token('radiologist', FACILITY)}"}
    with httpx.Client(base_url=serve.url, timeout=30, trust_env=False) as client:
        result = client.get(f"/v1/studies/{study}/result", headers=radiologist)
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["study_instance_uid"] == study
    assert body["findings"]
