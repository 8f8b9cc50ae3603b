"""Fixtures of the PACS tests: Orthanc wired to ``dxassist listen`` (see ``_pacs_harness``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tiny_models
from _pacs_harness import (
    Listener,
    Orthanc,
    Pacs,
    free_port,
    orthanc_destination,
    require_tools,
)


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    """A running Orthanc routing stable studies to a running dxassist listener, and back."""
    require_tools()
    root = tmp_path_factory.mktemp("pacs")
    home = root / "dxassist-home"
    home.mkdir()
    tiny_models.seed_both(home / "models", root / "build")
    listener_port, http_port, dicom_port = free_port(), free_port(), free_port()
    (root / "orthanc").mkdir()
    orthanc = Orthanc(root / "orthanc", http_port, dicom_port, listener_port)
    destination = orthanc_destination(dicom_port)
    listener = Listener(home, listener_port, [destination], metrics_port=free_port())
    orthanc.start()
    try:
        listener.start()
        try:
            yield Pacs(orthanc=orthanc, listener=listener, work=root / "work")
        finally:
            listener.stop()
    finally:
        orthanc.stop()
