"""``dxassist batch score http://.../dicom-web/studies``: the archive read from a real Orthanc by QIDO-RS.

An Orthanc of its own (DICOMweb plugin, HTTP basic auth) holds a few generated studies; the command,
with the credentials in its environment only, lists them by QIDO-RS, and each worker retrieves its
study with WADO-RS and files the result (every film out of the tiny model's distribution here, so the
summary's "not assessable" count is exercised). A second run files nothing new.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models
from _dxassist_cli import DXASSIST, REPO, dxassist_env
from _pacs_harness import PASSWORD, USER, Orthanc, free_port, require_tools

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from _batch_archive import write_archive  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]

STUDIES = 8


def test_dicomweb_archive_scored_and_not_twice(tmp_path: Path) -> None:
    require_tools()
    home = tmp_path / "home"
    # An OOD threshold no image passes: every film is scored "not assessable" (the summary counts them).
    imaging = tiny_models.build_imaging_onnx(tmp_path / "imaging.onnx", ood_threshold=1e-9)
    tiny_models.seed_cache(home / "models", tiny_models.IMAGING_NAME, imaging)
    triage = tiny_models.build_triage_onnx(tmp_path / "triage.onnx")
    tiny_models.seed_cache(home / "models", tiny_models.TRIAGE_NAME, triage)
    archive = tmp_path / "archive"
    scorable, refused = write_archive(archive, STUDIES, refuse_every=4)
    (tmp_path / "orthanc").mkdir()
    orthanc = Orthanc(tmp_path / "orthanc", free_port(), free_port(), free_port())
    orthanc.start()
    try:
        with orthanc.client() as client:
            for path in sorted(archive.rglob("IM0001")):
                client.post("/instances", content=path.read_bytes()).raise_for_status()
        env = dxassist_env(home)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        env |= {"DXASSIST_BATCH_DICOMWEB_USERNAME": USER, "DXASSIST_BATCH_DICOMWEB_PASSWORD": PASSWORD}
        command = [str(DXASSIST), "batch", "score", f"{orthanc.url}/dicom-web/studies", "--facility", "F1"]
        command += ["--workers", "1", "--json", "--no-progress"]
        summaries = []
        for _ in range(2):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            assert PASSWORD not in done.stdout + done.stderr
            summaries.append(json.loads(done.stdout.strip().splitlines()[-1]))
        denied = subprocess.run(
            command,
            env={k: v for k, v in env.items() if not k.startswith("DXASSIST_BATCH_DICOMWEB")},
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    finally:
        orthanc.stop()
    first, second = summaries
    assert first["source"] == f"{orthanc.url}/dicom-web"
    assert (first["studies"], first["scored"], first["refused"]) == (
        STUDIES,
        scorable,
        {"unsupported_modality": refused},
    )
    assert first["not_assessable"] == scorable
    assert (second["scored"], second["skipped"]) == (0, scorable)
    # Without credentials Orthanc answers 401: one line, exit 2, before any worker starts.
    assert denied.returncode == 2
    assert denied.stderr.strip().splitlines()[-1] == (
        f"dxassist: The DICOMweb server at {orthanc.url}/dicom-web did not answer the study query (HTTP 401)."
    )
