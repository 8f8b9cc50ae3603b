"""A study the DICOM listener received whole, but that the model may not answer for (a child's film, an
image smaller than the model's input), is set aside at once like a lateral-only study: it is not a failed
analysis.

Before, these refusals came from the analysis service, after the study was decoded, and the listener took
them for a passing failure (database down, model not loaded): the study was analysed again with backoff,
its files kept, and after the configured attempts moved to the dead-letter folder, where an operator's
``dxassist dead-letter retry`` only repeated the refusal.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
import tiny_models
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, QUIET_SECONDS, Listener, dxassist, free_port, storescu, wait_until

pytestmark = pytest.mark.integration


def _child(study: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(chest_cr(study=study)))
    ds.PatientBirthDate = "20200101"  # six at the study (20260301)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_childs_film_and_a_thumbnail_received_by_dimse_are_refused_not_dead_letters(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")  # input 64 px
    # One attempt: a refusal taken for a failure becomes a dead letter at once.
    listener = Listener(home, free_port(), [], extra_env={"DXASSIST_DIMSE_MAX_ATTEMPTS": "1"})
    listener.start()
    try:
        files = [
            write(tmp_path / "send" / "child.dcm", _child(new_uid())),
            write(tmp_path / "send" / "thumbnail.dcm", chest_cr(study=new_uid(), size=32)),
        ]
        storescu(files, port=listener.port, called=LISTENER_AET)
        wait_until(
            lambda: (home / "incoming").is_dir() and not any((home / "incoming").iterdir()),
            timeout=30 + 5 * QUIET_SECONDS,
            what="both studies taken out of incoming/",
        )
    finally:
        listener.stop()
    listed = dxassist(home, "dead-letter", "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "paediatric_study" not in listed.stdout and "image_too_small" not in listed.stdout, listed.stdout
    dead = home / "dead-letter" / "studies"
    assert not dead.exists() or not any(dead.iterdir())
    log = listener.log.read_text() + (home / "logs" / "listener.jsonl").read_text()
    assert "paediatric_study" in log and "image_too_small" in log
