"""The server-only install (``pip install .``, no extras) is small and complete.

A fresh virtual environment gets the package with its declared dependencies only (pip resolves them
from the index; its cache makes reruns fast). The models are registered with the full environment of
the test run (training and registration need the ``train`` extra), then the small environment's
``dxassist serve`` reads them from the MLflow registry, analyses an uploaded chest radiograph and
delivers the result to a STOW-RS destination that the test runs on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import _stow_destination
import httpx
import pytest
from _dxassist_cli import REPO
from _loopback import free_port, wait_until
from _stow_destination import Received
from tiny_models import IMAGING_NAME, TRIAGE_NAME, register_both

from model_registry import RegistryClient

# A cold pip cache downloads about 150 MB; on two shared cores the whole test took 11 minutes once.
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(2400)]

# What the full `mlflow` package and the `train` extra bring, and a server never imports.
NOT_IN_A_SERVER = ("torch", "pandas", "pyarrow", "scipy", "sklearn", "matplotlib", "flask", "gunicorn")
# The base install measured 1.1 GB with the full `mlflow`; with `mlflow-skinny` about 500 MB.
SIZE_LIMIT_MB = 700
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
_SKIP_IN_COPY = {".git", ".venv", "var", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def _copy_source(dst: Path) -> Path:
    """The project's files without virtualenvs, state or caches (pip builds in the folder it is given)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return skip | (_SKIP_IN_COPY & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


def _environment(home: Path | None = None) -> dict[str, str]:
    """A clean environment: no PYTHONPATH (the installed package is what runs), no dxassist settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI") and not k.startswith("DXASSIST_")
    }
    if home is not None:
        env["DXASSIST_HOME"] = str(home)
    return env


def _size_mb(folder: Path) -> float:
    """Disk usage as ``du`` counts it (allocated blocks), in MiB."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_blocks * 512
    return total / 2**20


@pytest.fixture
def stow_destination() -> Iterator[tuple[str, Received]]:
    """A STOW-RS endpoint on 127.0.0.1 that records every POST and answers 200."""
    with _stow_destination.stow_destination() as served:
        yield served


def _chest_radiograph(study: str) -> bytes:
    """A 128x128 CR chest image with a bright square the tiny imaging model calls positive."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    pixels = np.random.default_rng(0).integers(0, 400, size=(128, 128), dtype=np.uint16)
    pixels[32:80, 32:80] = 4000
    sop = f"{study}.1"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = f"{study}.2"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientName = "Install^Test"
    ds.PatientID = "IPP-INSTALL-1"
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "F"
    ds.StudyDate = "20260301"
    ds.StudyTime = "101500"
    ds.Rows = ds.Columns = 128
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _register_champions(home: Path) -> None:
    """Register and promote both tiny models in the home's MLflow store (with the full environment)."""
    client = RegistryClient(f"sqlite:///{home / 'mlflow.db'}", home / "mlartifacts")
    register_both(client, home.parent / "build", profile="test")


def test_server_only_install_serves_from_the_registry_and_delivers_by_stow_rs(
    tmp_path: Path, stow_destination: tuple[str, Received]
) -> None:
    venv = tmp_path / "server-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_environment())
    python, dxassist = venv / "bin" / "python", venv / "bin" / "dxassist"
    source = _copy_source(tmp_path / "source")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--progress-bar", "off", "--quiet", str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        env=_environment(),
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-4000:]
    size = _size_mb(venv)
    print(f"\nserver-only virtualenv: {size:.0f} MiB")  # the figure docs/deployment.md quotes
    assert size < SIZE_LIMIT_MB

    # Nothing of the data-science stack came with it; every module of the server imports (a module-level
    # import of an undeclared package fails here); the MLflow client is the skinny one.
    probe = f"""
import importlib, importlib.metadata, importlib.util, json, pkgutil
import inference, model_registry
heavy = [m for m in {NOT_IN_A_SERVER!r} if importlib.util.find_spec(m) is not None]
broken = {{}}
for package in (inference, model_registry):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("migrations.env"):
            continue  # Alembic's script, run by Alembic only
        try:
            importlib.import_module(info.name)
        except Exception as e:
            broken[info.name] = f"{{type(e).__name__}}: {{e}}"
names = {{d.metadata["Name"].lower() for d in importlib.metadata.distributions()}}
print(json.dumps({{"heavy": heavy, "broken": broken, "mlflow": "mlflow" in names,
                   "skinny": "mlflow-skinny" in names, "location": inference.__file__}}))
"""
    done = subprocess.run(
        [str(python), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=_environment(),
        cwd=tmp_path,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["heavy"] == []
    assert found["broken"] == {}
    assert (found["mlflow"], found["skinny"]) == (False, True)
    assert Path(found["location"]).is_relative_to(venv)  # the installed package, not the checkout
    check = subprocess.run(
        [str(python), "-m", "pip", "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=_environment(),
    )
    assert check.returncode == 0, check.stdout

    # The models, registered with the full environment; the small one reads them from the registry.
    home = tmp_path / "home"
    home.mkdir()
    _register_champions(home)
    url, received = stow_destination
    port = free_port()
    env = _environment(home) | {
        "DXASSIST_DESTINATIONS": json.dumps(
            [{"name": "vna", "kind": "stowrs", "url": url, "token": "vna-token", "timeout_seconds": 5}]
        ),
        "DXASSIST_DELIVERY_POLL_SECONDS": "0.2",
        "DXASSIST_DELIVERY_BACKOFF_SECONDS": "0.3",
        "DXASSIST_MODEL_WATCH_SECONDS": "0",
        "DXASSIST_PREPROCESS_WORKERS": "1",
    }

    def token(role: str) -> str:
        issued = subprocess.run(
            [
                str(dxassist),
                "token",
                "issue",
                "--subject",
                f"install-{role}",
                "--role",
                role,
                "--facility",
                "F1",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=env,
            cwd=home,
        )
        assert issued.returncode == 0, issued.stderr
        return issued.stdout.strip()

    pacs, radiologist = token("pacs"), token("radiologist")
    log = home / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(dxassist), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if server.poll() is not None:
                pytest.fail(f"dxassist serve exited:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=240, interval=0.3, what="the server-only install's /readyz")
        with httpx.Client(base_url=base, timeout=120) as http:
            models = http.get("/v1/models", headers={"Authorization": f"Bearer {radiologist}"}).json()
            served = sorted((m["name"], m["version"], m["alias"]) for m in models["models"])
            assert served == [(IMAGING_NAME, "1", "champion"), (TRIAGE_NAME, "1", "champion")]
            study = "1.2.826.0.1.3680043.10.1453.77.1"
            uploaded = http.post(
                "/v1/studies",
                files=[("files", ("pa.dcm", _chest_radiograph(study), "application/dicom"))],
                headers={"Authorization": f"Bearer {pacs}"},
            )
            assert uploaded.status_code == 201, uploaded.text
            result_id = uploaded.json()["result_id"]

            def delivered() -> list[dict[str, Any]] | None:
                got = http.get(f"/v1/results/{result_id}", headers={"Authorization": f"Bearer {radiologist}"})
                assert got.status_code == 200, got.text
                deliveries = got.json()["deliveries"]
                return deliveries if deliveries and all(d["state"] == "sent" for d in deliveries) else None

            deliveries = wait_until(
                delivered, timeout=120, interval=0.3, what="the result's STOW-RS deliveries"
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)

    sent = {str(ds.SOPInstanceUID): ds for ds in received.datasets() if ds.StudyInstanceUID == study}
    assert set(sent) == {d["object"] for d in deliveries}
    assert SR_CLASS in {str(ds.SOPClassUID) for ds in sent.values()}
    # The champions came from the registry into the home's cache (no cache was seeded).
    assert (home / "models" / IMAGING_NAME / "1" / "model.onnx").is_file()
    log_text = log.read_text(errors="replace")
    assert "Traceback" not in log_text and "ModuleNotFoundError" not in log_text
