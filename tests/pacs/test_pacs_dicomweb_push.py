"""Orthanc (Debian's package) pushes a study to ``dxassist serve`` with its DICOMweb plugin's STOW-RS.

The recipe of docs/pacs.md, run for real: a DicomWeb server entry pointing at dxassist's ``/dicomweb``
with a ``pacs`` bearer token in ``HttpHeaders``, a study uploaded to Orthanc over its REST API, then
``POST /dicom-web/servers/dxassist/stow`` as an asynchronous job. Orthanc 1.10's plugin sends a
73-character multipart boundary (over RFC 2046's 70), which dxassist must accept.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tiny_models
from _dxassist_cli import DXASSIST, dxassist_env
from _pacs_dicom import chest_cr, new_uid
from _pacs_harness import Orthanc, free_port, require_tools, wait_until

pytestmark = pytest.mark.integration

FACILITY = "F-ORTHANC"


@dataclass
class Serve:
    """``dxassist serve`` on loopback in a subprocess."""

    home: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str) -> str:
        command = [str(DXASSIST), "token", "issue", "--subject", f"orthanc-{role}", "--role", role]
        command += ["--facility", FACILITY]
        done = subprocess.run(
            command, env=dxassist_env(self.home), capture_output=True, text=True, check=True
        )
        return done.stdout.strip()


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
    port = free_port()
    env = {**dxassist_env(home), "DXASSIST_MODEL_WATCH_SECONDS": "0"}
    with open(root / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [str(DXASSIST), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    serve = Serve(home, port, process)
    orthanc.start()
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"dxassist serve exited at start:\n{(root / 'serve.log').read_text()[-3000:]}")
            try:
                return httpx.get(f"{serve.url}/readyz", timeout=2, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=90, interval=0.3, what="dxassist serve's /readyz")
        yield orthanc, serve
    finally:
        orthanc.stop()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_orthanc_pushes_a_study_with_its_dicomweb_plugin_and_the_result_is_filed(
    wired: tuple[Orthanc, Serve],
) -> None:
    orthanc, serve = wired
    study = new_uid()
    server = {
        "Url": f"{serve.url}/dicomweb/",
        "HttpHeaders": {"Authorization": f"Bearer {serve.token('pacs')}"},
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
    with httpx.Client(base_url=serve.url, timeout=30, trust_env=False) as client:
        result = client.get(
            f"/v1/studies/{study}/result", headers={"Authorization": f"Bearer {serve.token('radiologist')}"}
        )
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["study_instance_uid"] == study
    assert body["findings"]
