"""``dxassist batch score``: a study whose data the record can never hold is refused, not failed.

A failed study makes the command exit 1, and the operator's documented answer to that is "run again":
for a value that is refused the same way every time (an Issuer of Patient ID too long once upper-cased,
the API's ``invalid_value``), that answer would be an endless loop. Such a study is counted under
``refused`` by the API's code, as the upload, STOW-RS and DIMSE paths refuse it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, REPO, dxassist_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "api"))
from _api_dicom import chest_dicom, uid  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _archive(root: Path) -> str:
    """One scorable study, one CT (refused by modality), one whose issuer the record cannot hold.

    Returns the study UID of the last one.
    """
    from io import BytesIO

    from pydicom import dcmread

    for i, modality in enumerate(("CR", "CT")):
        folder = root / f"study-{i}"
        folder.mkdir(parents=True)
        blob = chest_dicom(study=uid(78, i), sop=uid(78, i, 1), modality=modality, size=64, seed=i)
        (folder / "IM0001").write_bytes(blob)
    hostile = uid(78, 2)
    ds = dcmread(BytesIO(chest_dicom(study=hostile, sop=uid(78, 2, 1), size=64, seed=2)))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.IssuerOfPatientID = "ﬃ" * 64  # 64 characters (LO's limit), 192 once upper-cased
    (root / "study-2").mkdir()
    ds.save_as(root / "study-2" / "IM0001", enforce_file_format=True)
    return hostile


def _score(home: Path, archive: Path) -> tuple[int, dict[str, object]]:
    env = dxassist_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run(
        [str(DXASSIST), "batch", "score", str(archive), "--facility", "F1", "--workers", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_value_the_record_cannot_hold_is_refused_for_good(home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    hostile = _archive(archive)

    status, summary = _score(home, archive)
    assert summary["refused"] == {"invalid_value": 1, "unsupported_modality": 1}
    assert summary["failed"] == {}  # not "run again to retry it": it would fail again
    assert summary["scored"] == 1
    assert status == 0

    # A re-run (what an operator does after exit 1) refuses it again, still without a failure, and files
    # nothing of it: not the study, not a half of it.
    status, again = _score(home, archive)
    assert (status, again["skipped"], again["failed"]) == (0, 1, {})
    assert again["refused"] == {"invalid_value": 1, "unsupported_modality": 1}
    with sqlite3.connect(home / "record.db") as db:
        assert db.execute(
            "SELECT count(*) FROM studies WHERE study_instance_uid = ?", (hostile,)
        ).fetchone() == (0,)
